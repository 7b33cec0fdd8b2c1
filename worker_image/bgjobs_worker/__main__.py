"""Command line: ``python -m bgjobs_worker run`` (or ``bgjobs-worker run``) in a Job pod."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bgjobs_worker import runner


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bgjobs-worker",
        description="bgjobs worker runtime: runs one task inside a Kubernetes Job pod.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="run the task named by BGJOBS_TASK once and exit with its exit code",
        description="Configuration comes from BGJOBS_* environment variables "
        "(set by the bgjobs operator); the exit code follows the worker/Job contract: "
        "0 success, 1 retryable, 3 permanent, 4 time limit, 143 SIGTERM.",
    )
    parser.parse_args(argv)
    return runner.run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
