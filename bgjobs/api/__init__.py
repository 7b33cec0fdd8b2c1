"""The bgjobs API (group bgjobs.dev): the one source of truth for the custom resources."""

from bgjobs.api.v1alpha1 import (
    GROUP,
    VERSION,
    BackgroundJob,
    BackgroundJobSpec,
    BackgroundJobStatus,
    DeadLetter,
    DeadLetterSpec,
    JobSchedule,
    JobScheduleSpec,
    Phase,
)

__all__ = [
    "GROUP",
    "VERSION",
    "BackgroundJob",
    "BackgroundJobSpec",
    "BackgroundJobStatus",
    "DeadLetter",
    "DeadLetterSpec",
    "JobSchedule",
    "JobScheduleSpec",
    "Phase",
]
