# `helm test`: the operator's metrics Service answers and serves the bgjobs metrics the
# chart's alerts use. Standard library only: it runs in the operator image.
import os
import sys
import time
import urllib.request

url = os.environ["METRICS_URL"]
wanted = ["bgjobs_jobs", "bgjobs_dead_letters_total", "bgjobs_reconcile_errors_total"]
deadline = time.monotonic() + float(os.environ.get("TIMEOUT_SECONDS", "60"))
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode()
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"FAIL: {url} did not answer: {exc}")
        print(f"waiting for {url}: {exc}", flush=True)
        time.sleep(2)
missing = [name for name in wanted if f"# TYPE {name} " not in body]
if missing:
    sys.exit(f"FAIL: {url} answered but lacks {', '.join(missing)}")
print(f"ok: {url} serves {', '.join(wanted)}")
