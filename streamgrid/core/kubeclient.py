"""The kubernetes client's configuration, for each process that talks to the
API server with it (operator, gateway, plugin)."""

from __future__ import annotations

import os


def load_kube_config(kubeconfig: str | None) -> None:
    """In a pod: the service account; elsewhere: the kubeconfig."""
    from kubernetes import config

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config(config_file=kubeconfig)
