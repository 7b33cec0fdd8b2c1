"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)
run as plain processes, with a process-based node standing in for kubelet.

Used by the integration tests and by ``make demo``; see README "devcluster"."""
