"""Run one container in its image's root filesystem: what a container runtime does, minus
the network namespace and cgroups.

The process node writes a :class:`Sandbox` as JSON and starts::

    unshare --mount --pid --uts --fork --propagation private --kill-child \\
        python devcluster/sandbox.py SPEC.json

This module then runs as PID 1 of the new PID namespace, still in the host's root: it
bind-mounts the container's root filesystem (from ``podman create`` + ``podman mount``),
gives it a fresh ``/proc``, a minimal ``/dev``, the pod's volumes and files
(termination log, service-account token, /etc/hosts), remounts the root read-only when
asked, then ``chroot``s, drops to the container's user and groups and ``exec``s the
command, which becomes PID 1 of the namespace (so, as in a container, SIGTERM reaches it
only when it handles the signal). When it exits, the kernel kills whatever it left behind
and the mounts go with the namespace.

The network is the host's: a container's ports are the machine's loopback ports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass
class Mount:
    source: str
    target: str
    readonly: bool = False


@dataclass
class Sandbox:
    root: str
    argv: list[str]
    env: dict[str, str]
    workdir: str = "/"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    readonly_root: bool = False
    mounts: list[Mount] = field(default_factory=list)
    hostname: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> Sandbox:
        raw = json.loads(path.read_text())
        raw["mounts"] = [Mount(**m) for m in raw["mounts"]]
        return cls(**raw)


def command(spec_file: Path) -> list[str]:
    """The host command line that runs the sandbox described in spec_file."""
    return [
        "unshare",
        "--mount",
        "--pid",
        "--uts",
        "--fork",
        "--propagation",
        "private",
        "--kill-child",
        sys.executable,
        str(Path(__file__).resolve()),
        str(spec_file),
    ]


def is_command(argv: object) -> bool:
    """Whether a host command line is one made by :func:`command`."""
    return (
        isinstance(argv, list | tuple)
        and len(argv) >= 2
        and argv[0] == "unshare"
        and str(argv[-2]) == str(Path(__file__).resolve())
    )


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _inside(root: str, path: str) -> str:
    """``path`` as the container sees it, on the host: symbolic links inside the image are
    followed within ``root`` (Debian's /var/run -> /run must not reach the host's /run)."""
    resolved = root
    parts = [p for p in path.split("/") if p not in ("", ".")]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = os.path.dirname(resolved) if resolved != root else root
            continue
        candidate = os.path.join(resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"too many symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = root
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved = candidate
    return resolved


def _mountpoint(root: str, target: str, source: str) -> str:
    """Create the mount point inside the root (a file for a file, a directory otherwise)."""
    where = _inside(root, target)
    if os.path.isdir(source):
        os.makedirs(where, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        if not os.path.exists(where):
            open(where, "a").close()
    return where


def _prepare(box: Sandbox) -> None:
    root = box.root
    _mount("--bind", root, root)
    _mount("-t", "proc", "proc", _mountpoint(root, "/proc", "/proc"))
    dev = _mountpoint(root, "/dev", "/dev")
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", dev)
    for name in DEVICES:
        _mount("--bind", f"/dev/{name}", _mountpoint(root, f"/dev/{name}", f"/dev/{name}"))
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", _mountpoint(root, "/dev/shm", "/"))
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, link))
    for m in box.mounts:
        where = _mountpoint(root, m.target, m.source)
        _mount("--bind", m.source, where)
        if m.readonly:
            _mount("-o", "remount,bind,ro", where)
    if box.readonly_root:
        _mount("-o", "remount,bind,ro", root)


def main(argv: list[str]) -> int:
    box = Sandbox.read(Path(argv[0]))
    try:
        _prepare(box)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"sandbox: cannot set up the container: {exc}", file=sys.stderr)
        return 128
    if box.hostname:
        socket.sethostname(box.hostname)
    os.chroot(box.root)
    try:
        os.chdir(box.workdir or "/")
    except OSError as exc:
        print(f"sandbox: working directory {box.workdir}: {exc}", file=sys.stderr)
        return 128
    os.setgroups(sorted({box.gid, *box.groups}))
    os.setgid(box.gid)
    os.setuid(box.uid)
    try:
        os.execvpe(box.argv[0], box.argv, box.env)
    except OSError as exc:
        # What runc says, in substance: the pod then fails with exit code 128.
        print(f"sandbox: exec {box.argv[0]!r}: {exc}", file=sys.stderr)
        return 128


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
