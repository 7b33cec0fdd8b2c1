"""Where the operator's memory goes per BackgroundJob, estimated in a fresh interpreter:
``python -m bench.memory_breakdown SAMPLE.json N`` prints JSON with the RSS growth (KiB per
object) of the operator's cached copy (the trimmed copy the BackgroundJob store keeps, the
informer's path; kopf keeps no record of BackgroundJobs), for N copies of a real object as
the API server returned it."""

from __future__ import annotations

import gc
import json
import sys
import uuid
from pathlib import Path
from typing import Any, cast


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(sample: dict[str, Any], n: int) -> dict[str, float]:
    from bgjobs_operator.config import OperatorConfig
    from bgjobs_operator.runtime import Runtime

    text = json.dumps(sample)
    raws = []
    for i in range(n):
        obj = json.loads(text)
        obj["metadata"]["name"] = f"{obj['metadata']['name']}-{i}"
        obj["metadata"]["uid"] = str(uuid.uuid4())
        raws.append(obj)
    gc.collect()
    before = rss_kib()
    # The handlers' path: the event's object, trimmed by the store.
    rt = Runtime(config=OperatorConfig(), api=cast(Any, None))
    for raw in raws:
        rt.backgroundjobs.put(json.loads(json.dumps(raw)))
    gc.collect()
    after_cache = rss_kib()
    return {
        "object_json_bytes": len(text),
        "cache_kib_per_object": (after_cache - before) / n,
    }


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]))))
