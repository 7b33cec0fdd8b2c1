"""What a kubelet works out before it starts a container from an image, for the process node.

From the pod, the container and the image's configuration: the command line (``command``/
``args`` over the image's entrypoint/cmd), the environment (the image's, then
``KUBERNETES_SERVICE_HOST``/``PORT``, then the container's), the working directory, the
user and groups (``runAsUser``/``runAsGroup``/``runAsNonRoot`` refused as the kubelet
refuses them), the read-only root and the mounts (emptyDir, projected service-account
token, configMap, secret, hostPath; /etc/hosts, /etc/hostname, /etc/resolv.conf, the
termination log). The result is a :class:`devcluster.sandbox.Sandbox` to run.

Pure functions take the data they need; :class:`PodVolumes` is the one part that writes
files (a pod's volumes, under its directory on the node) and asks the API server (tokens,
ConfigMaps, Secrets).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devcluster.images import ImageConfig
from devcluster.sandbox import Mount, Sandbox

Lookup = Callable[[str, str], dict[str, Any] | None]  # (kind plural, name) -> object or None


class ContainerError(Exception):
    """The container cannot be created; ``reason`` is the kubelet's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def command_line(container: dict[str, Any], cfg: ImageConfig) -> list[str]:
    """Kubernetes' rule: command replaces the entrypoint (and drops cmd); args alone
    replace cmd."""
    command, args = container.get("command"), container.get("args")
    if command:
        argv = list(command) + list(args or [])
    elif args:
        argv = cfg.entrypoint + list(args)
    else:
        argv = cfg.entrypoint + cfg.cmd
    if not argv:
        raise ContainerError("CreateContainerError", "no command specified")
    return argv


def _passwd(root: Path, name: str, db: str) -> list[str] | None:
    """The entry of ``name`` (or numeric id) in the image's /etc/passwd or /etc/group."""
    try:
        lines = (root / "etc" / db).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and name in (fields[0], fields[2]):
            return fields
    return None


def identity(
    pod: dict[str, Any], container: dict[str, Any], cfg: ImageConfig, root: Path
) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary groups), refusing what the kubelet refuses."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return sc[key] if sc.get(key) is not None else pod_sc.get(key)

    uid, gid, non_root = pick("runAsUser"), pick("runAsGroup"), pick("runAsNonRoot")
    md = pod["metadata"]
    where = f'(pod: "{md["name"]}_{md["namespace"]}", container: {container["name"]})'
    image_user, _, image_group = (cfg.user or "0").partition(":")
    if uid is None:
        if not image_user.isdigit():
            if non_root:
                raise ContainerError(
                    "CreateContainerConfigError",
                    f"container has runAsNonRoot and image has non-numeric user ({image_user}), "
                    f"cannot verify user is non-root {where}",
                )
            entry = _passwd(root, image_user, "passwd")
            if entry is None:
                raise ContainerError(
                    "CreateContainerError", f"unable to find user {image_user}: no matching entries"
                )
            uid = int(entry[2])
        else:
            uid = int(image_user)
    if non_root and uid == 0:
        raise ContainerError(
            "CreateContainerConfigError",
            f"container has runAsNonRoot and image will run as root {where}",
        )
    if gid is None:
        if image_group:
            group = _passwd(root, image_group, "group")
            gid = int(image_group) if image_group.isdigit() else int(group[2]) if group else 0
        else:
            entry = _passwd(root, str(uid), "passwd")
            gid = int(entry[3]) if entry else 0
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    return int(uid), int(gid), groups


def environment(
    cfg: ImageConfig, container_env: dict[str, str], api_host: str, api_port: int, hostname: str
) -> dict[str, str]:
    """The image's environment, then what the kubelet adds, then the container's."""
    return {
        **cfg.env,
        "HOSTNAME": hostname,
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        **container_env,
    }


def _write(directory: Path, files: dict[str, bytes], mode: int = 0o644) -> None:
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _decode(obj: dict[str, Any], secret: bool) -> dict[str, bytes]:
    data = obj.get("data") or {}
    if secret:
        return {k: base64.b64decode(v) for k, v in data.items()}
    out = {k: str(v).encode() for k, v in data.items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def _select(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return data
    return {i["path"]: data[i["key"]] for i in items if i["key"] in data}


class PodVolumes:
    """A pod's volumes as directories under its node directory, made once per pod."""

    def __init__(
        self,
        pod: dict[str, Any],
        pod_dir: Path,
        lookup: Lookup,
        token: Callable[[dict[str, Any]], str],
        field_ref: Callable[[str], str],
    ) -> None:
        self.pod = pod
        self.dir = pod_dir / "volumes"
        self.lookup = lookup
        self.token = token
        self.field_ref = field_ref
        self.paths: dict[str, Path] = {}

    def prepare(self) -> None:
        for volume in self.pod["spec"].get("volumes") or []:
            self.paths[volume["name"]] = self._make(volume)

    def _object(self, kind: str, ref: dict[str, Any]) -> dict[str, bytes] | None:
        obj = self.lookup(kind, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return {}
            raise ContainerError(
                "CreateContainerConfigError", f'{kind[:-1]} "{ref["name"]}" not found'
            )
        return _select(_decode(obj, kind == "secrets"), ref.get("items"))

    def _make(self, volume: dict[str, Any]) -> Path:
        name = volume["name"]
        path = self.dir / name
        if "hostPath" in volume:
            return Path(volume["hostPath"]["path"])
        path.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            path.chmod(0o777)  # as the kubelet makes it
        elif "configMap" in volume:
            _write(path, self._object("configmaps", volume["configMap"]) or {})
        elif "secret" in volume:
            ref = {**volume["secret"], "name": volume["secret"]["secretName"]}
            _write(path, self._object("secrets", ref) or {})
        elif "projected" in volume:
            files: dict[str, bytes] = {}
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    sat = source["serviceAccountToken"]
                    files[sat["path"]] = self.token(sat).encode()
                elif "configMap" in source:
                    files.update(self._object("configmaps", source["configMap"]) or {})
                elif "secret" in source:
                    files.update(self._object("secrets", source["secret"]) or {})
                elif "downwardAPI" in source:
                    for item in source["downwardAPI"].get("items") or []:
                        files[item["path"]] = self.field_ref(item["fieldRef"]["fieldPath"]).encode()
            _write(path, files)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise ContainerError(
                "CreateContainerConfigError", f"process node: unsupported volume {name}: {kinds}"
            )
        return path

    def mounts(self, container: dict[str, Any]) -> list[Mount]:
        out = []
        for vm in container.get("volumeMounts") or []:
            if vm["name"] not in self.paths:
                raise ContainerError(
                    "CreateContainerConfigError", f"volume {vm['name']} not found in the pod"
                )
            source = self.paths[vm["name"]]
            if vm.get("subPath"):
                source = source / vm["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            out.append(Mount(str(source), vm["mountPath"], bool(vm.get("readOnly"))))
        return out


def service_names(services: Sequence[tuple[str, str]], namespace: str) -> list[str]:
    """The DNS names a pod in ``namespace`` may use for each (name, namespace) Service."""
    names = []
    for svc, ns in services:
        names += [f"{svc}.{ns}.svc.cluster.local", f"{svc}.{ns}.svc", f"{svc}.{ns}"]
        if ns == namespace:
            names.append(svc)
    return names


def pod_files(
    pod: dict[str, Any], pod_dir: Path, services: Sequence[tuple[str, str]] = ()
) -> list[Mount]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf, as the kubelet gives every pod.

    There is no cluster DNS and no kube-proxy: every pod shares the machine's loopback, so
    a Service's names resolve to 127.0.0.1 through /etc/hosts, which reaches its pods when
    the Service's port is their container port (as in the chart)."""
    name = pod["metadata"]["name"]
    etc = pod_dir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    hosts = [f"127.0.0.1\tlocalhost {name}", "::1\tlocalhost"]
    hosts += [f"127.0.0.1\t{n}" for n in service_names(services, pod["metadata"]["namespace"])]
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    (etc / "hostname").write_text(name + "\n")
    mounts = [
        Mount(str(etc / "hosts"), "/etc/hosts", True),
        Mount(str(etc / "hostname"), "/etc/hostname", True),
    ]
    if os.path.exists("/etc/resolv.conf"):
        mounts.append(Mount("/etc/resolv.conf", "/etc/resolv.conf", True))
    return mounts


def sandbox(
    pod: dict[str, Any],
    container: dict[str, Any],
    cfg: ImageConfig,
    root: Path,
    env: dict[str, str],
    mounts: list[Mount],
) -> Sandbox:
    uid, gid, groups = identity(pod, container, cfg, root)
    sc = container.get("securityContext") or {}
    return Sandbox(
        root=str(root),
        argv=command_line(container, cfg),
        env=env,
        workdir=container.get("workingDir") or cfg.working_dir or "/",
        uid=uid,
        gid=gid,
        groups=groups,
        readonly_root=bool(sc.get("readOnlyRootFilesystem")),
        mounts=mounts,
        hostname=pod["metadata"]["name"],
    )
