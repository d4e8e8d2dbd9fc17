"""The Kopf operator for VideoStream resources.

A sub-package of ``streamgrid`` (never a top-level ``operator``, which would
shadow the standard library). ``handlers`` is the thin Kopf layer; the
decisions are the plain functions of ``reconcile`` and ``podspec``.
"""
