"""``python -m streamgrid.operator``: the operator (any number of replicas: the
holder of the Lease works, handlers.py; Kopf standalone, no peering)."""

from __future__ import annotations

import sys

# Kopf imports these API clients whenever they are installed (for isinstance
# checks and a login we replace, handlers.py): the official one alone is 55 MB
# of model classes the operator never uses (it has its own, core/kuberest.py).
# Its image does not install them; this keeps a whole-tool install as lean.
NOT_IMPORTED = ("kubernetes", "kubernetes_asyncio", "pykube")


def load() -> None:
    """Imports what the operator runs (importing handlers registers them)."""
    for name in NOT_IMPORTED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    from . import handlers  # noqa: F401


def main() -> int:
    load()
    import kopf

    from .settings import OperatorSettings

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
