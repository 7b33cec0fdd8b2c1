"""Container images without Docker: a base from Debian's packages, builds, root filesystems.

* ``base``: ``mmdebstrap --variant=minbase`` makes a Debian root filesystem with python3
  and its venv module from Debian's packages, and ``podman import`` turns it into an image.
  Its tag is keyed by the recipe, so it is built once per recipe and then reused.
* ``build``: the operator and worker Dockerfiles, with Docker when it is installed, else
  with ``podman build --isolation chroot`` (no daemon, no runtime: it works where
  ``podman run`` does not). The host's CA bundle is mounted for the build only, so pip
  works behind a TLS-intercepting proxy; it never lands in an image.
* ``mount``/``config``: an image's root filesystem and its entrypoint/cmd/env/user, for the
  process node to run a container in (devcluster/sandbox.py).

Command line: ``python -m devcluster.images {base,build,sizes}`` (stdlib only: runs
without the project's virtualenv, like ``make images`` does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "docker.io/library/python:3.11-slim"
OPERATOR = "bgjobs/operator"
WORKER = "bgjobs/worker"
DOCKERFILES = {OPERATOR: "operator/Dockerfile", WORKER: "worker_image/Dockerfile"}
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA = "/run/build-ca.crt"

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# usr-is-merged: else apt satisfies init-system-helpers with usrmerge, which drags in perl.
PACKAGES = ("python3", "python3-venv", "ca-certificates", "usr-is-merged")
# No documentation, manual pages or translations in an image nobody reads them in;
# copyright files stay.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# mmdebstrap installs usrmerge (and with it perl) while it sets the root up; once /usr is
# merged nothing needs them.
CUSTOMIZE = (
    'chroot "$1" apt-get purge -y -qq --auto-remove usrmerge',
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
)


def mmdebstrap_args(out: Path) -> list[str]:
    args = ["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(PACKAGES)}"]
    args += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    args += [f"--customize-hook={hook}" for hook in CUSTOMIZE]
    return [*args, SUITE, str(out), MIRROR]


def base_ref() -> str:
    """The Debian base image's name, keyed by its recipe: a changed recipe builds anew."""
    key = hashlib.sha256(json.dumps(mmdebstrap_args(Path("-"))).encode()).hexdigest()[:10]
    return f"localhost/bgjobs/debian-python:{SUITE}-{key}"


def podman(*args: str, capture: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], check=True, text=True, stdout=subprocess.PIPE if capture else None
    )
    return done.stdout or ""


def exists(ref: str) -> bool:
    """Whether an image is in local podman storage (short names match localhost/...)."""
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0


def build_base(force: bool = False) -> str:
    """Build (or reuse) the base image from Debian's packages; returns its reference."""
    ref = base_ref()
    if exists(ref) and not force:
        return ref
    for tool in ("mmdebstrap", "podman"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: apt-get install -y podman mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="bgjobs-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(mmdebstrap_args(tarball), check=True)
        podman("import", "--change", 'CMD ["python3"]', str(tarball), ref)
    return ref


def builder() -> str:
    """Docker when a daemon answers (a docker client alone is not enough), else podman;
    IMAGE_BUILDER=docker|podman chooses."""
    chosen = os.environ.get("IMAGE_BUILDER")
    if chosen:
        return chosen
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=30)
        if probe.returncode == 0:
            return "docker"
    return "podman"


def build_command(tool: str, image: str, tag: str, base: str | None) -> list[str]:
    cmd = [tool, "build", "-f", str(REPO / DOCKERFILES[image]), "-t", f"{image}:{tag}"]
    if base:
        cmd += ["--build-arg", f"BASE={base}"]
    if tool == "podman":
        cmd += ["--isolation", "chroot"]
        if HOST_CA.exists():
            cmd += ["--volume", f"{HOST_CA}:{BUILD_CA}:ro", "--build-arg", f"PIP_CERT={BUILD_CA}"]
    return [*cmd, str(REPO)]


def build(
    tag: str,
    base: str | None = None,
    images: tuple[str, ...] = (OPERATOR, WORKER),
    tool: str | None = None,
) -> None:
    tool = tool or builder()
    for image in images:
        started = time.monotonic()
        subprocess.run(build_command(tool, image, tag, base), check=True)
        print(f"built {image}:{tag} with {tool} in {time.monotonic() - started:.0f}s")


EXAMPLES = "bgjobs/worker-examples"
# The user's recipe (worker_image/Dockerfile) with the repository's example tasks.
EXAMPLES_RECIPE = """\
FROM {worker}
USER root
COPY examples/ /app/examples/
RUN python -m compileall -q /app
USER 10001
ENV BGJOBS_TASK_MODULES=examples.tasks
"""


def build_examples(tag: str, tool: str | None = None) -> str:
    """bgjobs/worker-examples:TAG, the worker image with examples/ (what the e2e runs)."""
    tool = tool or builder()
    ref = f"{EXAMPLES}:{tag}"
    with tempfile.TemporaryDirectory(prefix="bgjobs-examples-") as tmp:
        recipe = Path(tmp) / "Containerfile"
        recipe.write_text(EXAMPLES_RECIPE.format(worker=f"{WORKER}:{tag}"))
        cmd = [tool, "build", "-q", "-f", str(recipe), "-t", ref]
        if tool == "podman":
            cmd += ["--isolation", "chroot"]
        subprocess.run([*cmd, str(REPO)], check=True, stdout=subprocess.DEVNULL)
    return ref


def size(ref: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", ref).strip())


@dataclass(frozen=True)
class ImageConfig:
    """What of an image's configuration a kubelet uses to start a container."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""


def config(ref: str) -> ImageConfig:
    (info,) = json.loads(podman("image", "inspect", ref))
    cfg = info.get("Config") or {}
    env = dict(item.split("=", 1) for item in cfg.get("Env") or [] if "=" in item)
    return ImageConfig(
        entrypoint=list(cfg.get("Entrypoint") or []),
        cmd=list(cfg.get("Cmd") or []),
        env=env,
        working_dir=cfg.get("WorkingDir") or "",
        user=cfg.get("User") or "",
    )


def mount(ref: str) -> Path:
    """The image's root filesystem, to look at (containers get their own: see create)."""
    return Path(podman("image", "mount", ref).strip())


def create(ref: str, name: str) -> Path:
    """A container's own root filesystem (the image plus a writable layer of its own):
    ``podman create`` + ``podman mount``, which need no runtime, unlike ``podman run``."""
    remove(name)
    podman("create", "--name", name, ref)
    return Path(podman("mount", name).strip())


def remove(name: str) -> None:
    """Remove a container made by create (and its writable layer); no error when absent."""
    subprocess.run(["podman", "rm", "--force", "--ignore", name], check=False, capture_output=True)


def site_packages(root: Path) -> set[str]:
    """Distribution and package names installed in the image's /opt/bgjobs virtualenv."""
    found: set[str] = set()
    for sp in root.glob("opt/bgjobs/lib/python3*/site-packages"):
        found |= {p.name for p in sp.iterdir()}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.images", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    base = sub.add_parser("base", help="build the base image from Debian packages; print it")
    base.add_argument("--force", action="store_true", help="rebuild even when it exists")
    b = sub.add_parser("build", help="build bgjobs/operator and bgjobs/worker")
    b.add_argument("--tag", default="0.1.0")
    b.add_argument("--base", default=None, help=f"base image (default {DEFAULT_BASE})")
    b.add_argument(
        "--debian-base", action="store_true", help="build on the Debian base (made if missing)"
    )
    s = sub.add_parser("sizes", help="print the images' sizes")
    s.add_argument("--tag", default="0.1.0")
    opts = parser.parse_args(argv)
    os.chdir(REPO)
    if opts.cmd == "base":
        print(build_base(force=opts.force))
    elif opts.cmd == "build":
        build(opts.tag, build_base() if opts.debian_base else opts.base)
    elif opts.cmd == "sizes":
        for image in (OPERATOR, WORKER):
            print(f"{image}:{opts.tag} {size(f'{image}:{opts.tag}') / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
