"""Kubernetes backend: projects are labelled pods, commands run through exec websockets."""

from rdev.adapters.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
