"""`make bench`: the operator's throughput, API-write cost, latency, progress coalescing,
memory and worker overhead, each against a baseline measured in the same run.

This package must stay importable by the Celery baseline's own virtualenv (which has only
celery and redis): nothing here imports kopf or the Kubernetes client at package level.
"""
