"""``python -m streamgrid.operator``: the operator (any number of replicas: the
holder of the Lease works, handlers.py; Kopf standalone, no peering)."""

from __future__ import annotations

import sys

import kopf

from . import handlers  # noqa: F401 - importing registers the handlers
from .settings import OperatorSettings


def main() -> int:
    settings = OperatorSettings()
    namespaces = [settings.namespace] if settings.namespace else []
    kopf.configure(verbose=False)
    kopf.run(
        standalone=True,
        namespaces=namespaces,
        clusterwide=not namespaces,
        liveness_endpoint=f"http://{settings.liveness_host}:{settings.liveness_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
