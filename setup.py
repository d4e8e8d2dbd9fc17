"""The compiled parts: the capture worker's receive loop (streamgrid/capture/_rtp.c
over the parser in rtp_parse.c: RTSP over TCP for H.264/H.265, read without
FFmpeg) and its luma sum (_luma.c).

Everything else about the package is in pyproject.toml. The extension needs a C
compiler and Python's headers, nothing more.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamgrid.capture._rtp",
            ["streamgrid/capture/_rtp.c", "streamgrid/capture/rtp_parse.c"],
            depends=["streamgrid/capture/rtp_parse.h"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            # Without a compiler (the gateway's and operator's images) the
            # package still installs; a worker there falls back to PyAV's
            # demux and says so. tests/integration/test_rtp.py fails if CI
            # ever ends up without it. tests/fuzz/rtp_fuzz.c builds the parser
            # alone.
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
