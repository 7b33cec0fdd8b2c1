"""What the process node works out before it starts a container from an image
(devcluster/containers.py): the kubelet's rules, as pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster.containers import ContainerError, command_line, environment, identity
from devcluster.images import ImageConfig

WORKER = ImageConfig(entrypoint=["bgjobs-worker"], cmd=["run"], env={"A": "image"}, user="10001")


def pod(**security: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"securityContext": security}}


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["bgjobs-worker", "run"]),
        ({"args": ["--help"]}, ["bgjobs-worker", "--help"]),
        ({"command": ["python"]}, ["python"]),
        ({"command": ["python"], "args": ["-V"]}, ["python", "-V"]),
    ],
)
def test_command_and_args_override_entrypoint_and_cmd(
    container: dict[str, Any], argv: list[str]
) -> None:
    assert command_line(container, WORKER) == argv


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(ContainerError):
        command_line({}, ImageConfig())


def test_user_comes_from_the_container_then_the_pod_then_the_image(tmp_path: Path) -> None:
    c = {"name": "c", "securityContext": {"runAsUser": 7}}
    assert identity(pod(runAsUser=5, runAsGroup=6), c, WORKER, tmp_path) == (7, 6, [])
    assert identity(pod(runAsUser=5), {"name": "c"}, WORKER, tmp_path)[0] == 5
    assert identity(pod(fsGroup=9), {"name": "c"}, WORKER, tmp_path) == (10001, 0, [9])


def test_run_as_non_root_refuses_root_and_unverifiable_users(tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match="image will run as root") as root:
        identity(pod(runAsNonRoot=True), {"name": "c"}, ImageConfig(user=""), tmp_path)
    assert root.value.reason == "CreateContainerConfigError"
    with pytest.raises(ContainerError, match="non-numeric user"):
        identity(pod(runAsNonRoot=True), {"name": "c"}, ImageConfig(user="app"), tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:1000:1001::/home/app:/bin/sh\n")
    assert identity(pod(), {"name": "c"}, ImageConfig(user="app"), tmp_path) == (1000, 1001, [])


def test_the_container_env_wins_over_the_kubelets_over_the_images() -> None:
    env = environment(WORKER, {"A": "container"}, "127.0.0.1", 6443, "p")
    assert env["A"] == "container"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert environment(WORKER, {}, "h", 1, "p")["A"] == "image"
