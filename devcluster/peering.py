"""kopf's namespaced peering kind (KopfPeering) and one peering object, for runs of several
operator replicas on a devcluster (the chart installs the same CRDs with peering.enabled)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from kubernetes import client

PEERING_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Namespaced",
        "names": {
            "kind": "KopfPeering",
            "listKind": "KopfPeeringList",
            "plural": "kopfpeerings",
            "singular": "kopfpeering",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def ensure_peering(api: client.ApiClient, namespace: str, name: str, timeout: float = 60) -> None:
    """The KopfPeering CRD (established) and a KopfPeering `name` in `namespace`."""
    ext = client.ApiextensionsV1Api(api)
    with contextlib.suppress(client.ApiException):  # 409: already there
        ext.create_custom_resource_definition(PEERING_CRD)  # type: ignore[arg-type]  # dicts work
    deadline = time.monotonic() + timeout
    while True:
        crd = ext.read_custom_resource_definition("kopfpeerings.kopf.dev")
        conds = (crd.status.conditions or []) if crd.status else []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the KopfPeering CRD was not established")
        time.sleep(0.2)
    with contextlib.suppress(client.ApiException):  # 409: already there
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "kopf.dev",
            "v1",
            namespace,
            "kopfpeerings",
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}},
        )
