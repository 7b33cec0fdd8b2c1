"""Where the pinned control-plane binaries live (built by build-bins.sh)."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pins[key] = value
    return pins


def cache_dir() -> Path:
    return Path(os.environ.get("BGJOBS_CACHE", Path.home() / ".cache" / "bgjobs"))


def binary(name: str) -> Path:
    """Path of one built binary; raises with the command to run when it is missing."""
    pins = versions()
    owner = {
        "etcd": f"etcd-{pins['ETCD_VERSION']}",
        "helm": f"helm-{pins['HELM_VERSION']}",
        "kube-apiserver": f"kubernetes-{pins['KUBERNETES_VERSION']}",
        "kube-controller-manager": f"kubernetes-{pins['KUBERNETES_VERSION']}",
        "kubectl": f"kubernetes-{pins['KUBERNETES_VERSION']}",
    }[name]
    path = cache_dir() / "bin" / owner / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make cluster-bins` first")
    return path


def bin_dirs() -> list[Path]:
    """Directories holding kubectl and helm, to put first on PATH."""
    return [binary("kubectl").parent, binary("helm").parent]


def source_path() -> str:
    """PYTHONPATH for processes that run this tree's code (operator, process node, pods):
    the packages of this checkout first, ahead of any editable install of another one."""
    root = HERE.parent
    return os.pathsep.join(str(p) for p in (root, root / "operator", root / "worker_image"))
