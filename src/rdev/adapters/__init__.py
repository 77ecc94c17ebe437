"""Adapters: the edges where rdev meets HTTP, SQL, processes, Kubernetes and other replicas."""
