"""Names that the operator and its clients must agree on, in one place."""

from __future__ import annotations

import hashlib

from bgjobs.api.v1alpha1 import MAX_JOB_NAME


def dead_letter_name(job_name: str, job_uid: str) -> str:
    """Deterministic per BackgroundJob *instance*: a recreated job of the same name gets
    its own dead letter, and a restarted operator finds the one it already made."""
    return f"{job_name}-{job_uid[:8]}"


def _bounded(base: str, suffix: str) -> str:
    """``base + suffix`` kept within the 63 characters a Job name may have: a long base is
    cut and a hash of all of it appended, so distinct bases keep distinct names."""
    if len(base) + len(suffix) > MAX_JOB_NAME:
        digest = hashlib.sha256(base.encode()).hexdigest()[:6]
        base = f"{base[: MAX_JOB_NAME - len(suffix) - 7]}-{digest}"
    return base + suffix


def replay_name(dead_letter: str, n: int) -> str:
    """The BackgroundJob the n-th replay of a dead letter creates: ``<dl>-r<n>``, kept within
    the 63 characters a Job name may have."""
    return _bounded(dead_letter, f"-r{n}")


def step_job_name(workflow: str, step: str, round_: int = 0) -> str:
    """The BackgroundJob running ``step`` of a JobWorkflow: ``<workflow>-<step>``, and
    ``<workflow>-<step>-r<N>`` when the N-th resume runs it again. Deterministic, so an
    operator restarted after creating it finds it instead of starting the step twice."""
    return _bounded(f"{workflow}-{step}", f"-r{round_}" if round_ else "")


# --- Resource plurals, labels, annotations and the worker container's name -------------
# The operator, the client and the plugin all import these; nothing else spells them.
# (The exit codes are the worker's: bgjobs_worker.errors.ExitCode, which the operator's
# podFailurePolicy imports, since the worker runtime may import nothing of bgjobs.api.)

PLURALS = {
    "BackgroundJob": "backgroundjobs",
    "JobSchedule": "jobschedules",
    "DeadLetter": "deadletters",
    "JobWorkflow": "jobworkflows",
    "JobQueue": "jobqueues",
}

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "bgjobs"
QUEUE = "bgjobs.dev/queue"
BACKGROUND_JOB = "bgjobs.dev/backgroundjob"
SCHEDULE = "bgjobs.dev/schedule"
DEAD_LETTER = "bgjobs.dev/dead-letter"
TASK_ANNOTATION = "bgjobs.dev/task"  # an annotation: task names need not be label-safe
IDEMPOTENCY_ANNOTATION = "bgjobs.dev/idempotency-key"
# A JobSchedule's run: the CronJob owns the Job, the BackgroundJob records the Job's uid.
JOB_UID_ANNOTATION = "bgjobs.dev/job-uid"
REPLAY_OF_ANNOTATION = "bgjobs.dev/replay-of"
# A JobWorkflow's step: its BackgroundJob carries the workflow, the step and the resume
# round that created it (0 for the first run, N after the N-th resume).
WORKFLOW = "bgjobs.dev/workflow"
STEP = "bgjobs.dev/step"
ROUND = "bgjobs.dev/workflow-round"

# Set by the Job controller on every pod it creates.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"

WORKER_CONTAINER = "worker"
COMPONENT = "bgjobs-operator"
