"""Loading cluster credentials and turning API errors into bgjobs errors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from bgjobs.errors import (
    ApiError,
    ClusterUnreachable,
    ConfigurationError,
    Conflict,
    InvalidSpec,
    NotFound,
    status_message,
)

# --- I/O ------------------------------------------------------------------------------


def as_dict(obj: object) -> dict[str, Any]:
    """The custom-objects API returns decoded JSON typed as ``object``."""
    return cast(dict[str, Any], obj)


def _short_reason(exc: BaseException) -> str:
    """``[Errno 111] Connection refused`` out of urllib3's nested retry message."""
    text = str(getattr(exc, "reason", None) or exc)
    match = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return match.group(0).strip() if match else text


@contextlib.contextmanager
def api_errors(
    server: str, kind: str = "BackgroundJob", name: str = "", namespace: str = ""
) -> Iterator[None]:
    """Turn the Kubernetes client's exceptions into bgjobs.errors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        message, causes = status_message(exc.body)
        if exc.status == 404:
            raise NotFound(kind, name, namespace) from None
        if exc.status == 422:
            raise InvalidSpec(message, causes) from None
        if exc.status == 409:
            raise Conflict(message or f"{kind.lower()} {name!r} conflicts") from None
        if not exc.status:
            raise ClusterUnreachable(server, str(exc.reason)) from None
        raise ApiError(exc.status, str(exc.reason), message) from None
    except (HTTPError, OSError) as exc:
        raise ClusterUnreachable(server, _short_reason(exc)) from None


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient from ``kubeconfig`` (a path), else in-cluster config when running in a
    pod, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigurationError(
            f"no usable Kubernetes configuration ({where}): {exc}. Set KUBECONFIG, or run "
            "`make cluster-up` for the local dev cluster"
        ) from None


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the current kubeconfig context (in a pod: the pod's own), else
    ``default``."""
    from kubernetes import config

    sa_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        with contextlib.suppress(OSError):
            return sa_ns.read_text().strip() or "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # noqa: BLE001 - no kubeconfig: the loader reports that later
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")
