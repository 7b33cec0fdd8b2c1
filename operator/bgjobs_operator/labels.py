"""Label and annotation keys the operator puts on what it creates."""

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "bgjobs"
QUEUE = "bgjobs.dev/queue"
BACKGROUND_JOB = "bgjobs.dev/backgroundjob"
SCHEDULE = "bgjobs.dev/schedule"
DEAD_LETTER = "bgjobs.dev/dead-letter"
TASK_ANNOTATION = "bgjobs.dev/task"  # an annotation: task names need not be label-safe

# Set by the Job controller on every pod it creates.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"

COMPONENT = "bgjobs-operator"
