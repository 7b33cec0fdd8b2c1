"""bgjobs: Kubernetes-native background jobs (BackgroundJob and JobSchedule resources)."""
