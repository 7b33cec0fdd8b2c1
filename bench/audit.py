"""API writes read back from the API server's audit log (<state>/logs/audit*.log).

The devcluster audits every create/update/patch/delete at Metadata level: who (user agent),
what (resource, subresource, name, namespace), when (microseconds) and the response code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Write:
    at: float  # requestReceivedTimestamp, seconds since the epoch
    verb: str
    resource: str
    subresource: str | None
    namespace: str
    name: str
    user_agent: str
    code: int

    @property
    def kind(self) -> str:
        """'patch backgroundjobs/status', 'create jobs', ..."""
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {what}"


def _audit_files(state: Path) -> list[Path]:
    # The rotated file (audit-<time>.log) holds the older entries.
    logs = state / "logs"
    return [*sorted(logs.glob("audit-*.log")), logs / "audit.log"]


def writes(state: Path, namespaces: Iterable[str]) -> list[Write]:
    """Every completed write request to objects in these namespaces."""
    wanted = set(namespaces)
    needles = [f'"namespace":"{ns}"'.encode() for ns in wanted]
    found: list[Write] = []
    for path in _audit_files(state):
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for line in f:
                if not any(n in line for n in needles):
                    continue  # cheap filter before parsing: the log holds every test's writes
                entry = json.loads(line)
                ref = entry.get("objectRef") or {}
                if entry.get("stage") != "ResponseComplete" or ref.get("namespace") not in wanted:
                    continue
                found.append(
                    Write(
                        at=datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp(),
                        verb=entry["verb"],
                        resource=ref.get("resource", ""),
                        subresource=ref.get("subresource"),
                        namespace=ref["namespace"],
                        name=ref.get("name", ""),
                        user_agent=entry.get("userAgent", ""),
                        code=int((entry.get("responseStatus") or {}).get("code") or 0),
                    )
                )
    found.sort(key=lambda w: w.at)
    return found


def by_agent(found: Iterable[Write], *prefixes: str) -> list[Write]:
    return [w for w in found if w.user_agent.startswith(prefixes)]


def tally(found: Iterable[Write]) -> dict[str, int]:
    """Writes counted by 'verb resource[/subresource]', most frequent first."""
    return dict(Counter(w.kind for w in found).most_common())


def tally_agents(found: Iterable[Write]) -> dict[str, int]:
    """Writes counted by user agent (version suffix kept: it names the client)."""
    return dict(Counter(w.user_agent.split(" ")[0] for w in found).most_common())
