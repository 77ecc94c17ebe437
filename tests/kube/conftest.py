"""Makes the fake API server's fixtures available to the tests in this package."""

from .fixtures import core_v1, http, kube_api, kube_client, kubeconfig, ws_core_v1

__all__ = ["core_v1", "http", "kube_api", "kube_client", "kubeconfig", "ws_core_v1"]
