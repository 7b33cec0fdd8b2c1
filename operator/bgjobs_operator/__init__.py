"""The bgjobs operator: turns BackgroundJob, JobSchedule and DeadLetter resources into
batch/v1 Jobs and CronJobs, and reports what they do back into status."""
