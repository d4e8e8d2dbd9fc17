"""The capture worker: one process per stream, in the embedded runtime and in a pod.

It knows nothing of HTTP or Kubernetes: it reads its settings from the
environment, writes frames to a FrameStore and reports progress to a sink.
"""
