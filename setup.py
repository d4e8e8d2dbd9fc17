"""The compiled parts: the capture worker's receive loops (streamgrid/capture/_rtp.c,
_packets.c) and its luma sum (_luma.c).

Everything else about the package is in pyproject.toml. The extension needs a C
compiler and Python's headers, but no FFmpeg headers: it binds at run time to the
FFmpeg PyAV has loaded.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamgrid.capture._packets",
            ["streamgrid/capture/_packets.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            # Without a compiler (the gateway's and operator's images) the
            # package still installs; a worker there falls back to PyAV's
            # demux and says so. tests/integration/test_native.py fails if CI
            # ever ends up without it.
            optional=True,
        ),
        # RTSP over TCP for H.264/H.265, read without FFmpeg: needs nothing
        # but Python's headers. Optional for the same reason.
        Extension(
            "streamgrid.capture._rtp",
            ["streamgrid/capture/_rtp.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        # The sum of a picture's luma bytes (its brightness) without NumPy.
        # Optional too: without it the worker sums with Pillow's histogram.
        Extension(
            "streamgrid.capture._luma",
            ["streamgrid/capture/_luma.c"],
            extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
