"""The images as users get them: built without Docker, looked into, and run in a chroot.

Marked ``e2e``: they build images (a minute or two cold, seconds warm), so ``make test``
leaves them to ``make e2e``, which CI runs too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from devcluster import images, sandbox

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def run_in_image(
    ref: str,
    argv: list[str] | None,
    env: dict[str, str],
    tmp_path: Path,
    *,
    readonly_root: bool = True,
) -> tuple[int, str, str]:
    """Run a container of `ref` as the process node does: its entrypoint and cmd unless
    argv is given, as the image's user, read-only root, an emptyDir on /tmp and a
    termination log. Returns (exit code, output, termination message)."""
    cfg = images.config(ref)
    name = f"bgjobs-test-{tmp_path.name}"[:60]
    root = images.create(ref, name)
    try:
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        scratch.chmod(0o777)
        termination = tmp_path / "termination-log"
        termination.write_text("")
        termination.chmod(0o666)
        uid, _, gid = cfg.user.partition(":")
        box = sandbox.Sandbox(
            root=str(root),
            argv=argv or cfg.entrypoint + cfg.cmd,
            env={**cfg.env, **env},
            workdir=cfg.working_dir or "/",
            uid=int(uid or 0),
            gid=int(gid or uid or 0),
            readonly_root=readonly_root,
            mounts=[
                sandbox.Mount(str(scratch), "/tmp"),
                sandbox.Mount(str(termination), "/dev/termination-log"),
            ],
        )
        spec = tmp_path / "sandbox.json"
        box.write(spec)
        done = subprocess.run(
            sandbox.command(spec), capture_output=True, text=True, timeout=120, check=False
        )
        return done.returncode, done.stdout + done.stderr, termination.read_text()
    finally:
        images.remove(name)


def test_worker_image_has_no_kopf_and_no_kubernetes_client(built_images: dict[str, str]) -> None:
    installed = images.site_packages(images.mount(built_images["worker"]))
    assert "bgjobs_worker" in installed and "redis" in installed
    assert not {n for n in installed if n.startswith(("kopf", "kubernetes"))}, installed


def test_operator_image_has_its_bytecode_compiled(built_images: dict[str, str]) -> None:
    root = images.mount(built_images["operator"])
    (site,) = root.glob("opt/bgjobs/lib/python3*/site-packages")
    missing = [
        str(py.relative_to(site))
        for package in ("bgjobs_operator", "bgjobs", "kopf", "kubernetes/client")
        for py in (site / package).rglob("*.py")
        if not list(py.parent.glob(f"__pycache__/{py.stem}.cpython-*.pyc"))
    ]
    assert not missing, missing[:10]


def test_operator_image_imports_on_a_read_only_root(
    built_images: dict[str, str], tmp_path: Path
) -> None:
    code, out, _ = run_in_image(
        built_images["operator"],
        ["python", "-c", "import bgjobs_operator.main, kopf, kubernetes; print('imported')"],
        {},
        tmp_path,
    )
    assert code == 0 and "imported" in out, out


def user_recipe(worker: str) -> str:
    """The task-image recipe from worker_image/Dockerfile's comment, FROM the built worker."""
    text = (REPO / "worker_image" / "Dockerfile").read_text()
    block = re.search(r"^#\s+FROM bgjobs/worker:\S+\n(?:#   .*\n)+", text, re.M)
    assert block, "worker_image/Dockerfile lost its recipe comment"
    lines = [line.removeprefix("#   ") for line in block.group(0).splitlines()]
    lines[0] = f"FROM {worker}"
    return "\n".join(lines) + "\n"


def test_a_users_task_image_from_the_recipe_runs_its_task(
    built_images: dict[str, str], tmp_path: Path
) -> None:
    context = tmp_path / "context"
    (context / "myapp").mkdir(parents=True)
    # Already in the worker image: pip resolves it without the network.
    (context / "requirements.txt").write_text("redis>=5\n")
    (context / "myapp" / "__init__.py").write_text("")
    (context / "myapp" / "tasks.py").write_text(
        "from bgjobs_worker import task\n\n\n"
        '@task(name="myapp.add")\n'
        "def add(x: int, y: int) -> int:\n"
        "    return x + y\n"
    )
    (context / "Dockerfile").write_text(user_recipe(built_images["worker"]))
    ref = f"localhost/bgjobs-test/myapp:{tmp_path.name.lower()}"[:120]
    subprocess.run(
        ["podman", "build", "--isolation", "chroot", "-q", "-t", ref, str(context)],
        check=True,
        capture_output=True,
    )
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        code, out, message = run_in_image(
            ref,
            None,  # the image's own entrypoint and cmd: bgjobs-worker run
            {"BGJOBS_TASK": "myapp.add", "BGJOBS_ARGS": "[2, 3]"},
            run_dir,
        )
        assert code == 0, out
        assert "5" in message, (message, out)
    finally:
        subprocess.run(["podman", "rmi", "--force", ref], check=False, capture_output=True)
