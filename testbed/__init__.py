"""The real services the tests and the benchmarks run (RTSP cameras, S3,
Kubernetes control planes, the real node, mediamtx, live555), each started
once, stopped by its PID: one infrastructure that tests/ and bench/ both
import. Not part of the installed package."""
