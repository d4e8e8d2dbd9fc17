"""The compiled parts: the capture worker's receive loops (streamgrid/capture/_rtp.c
with rtp_parse.c, _packets.c).

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
        # but Python's headers. Optional for the same reason. The parser
        # (rtp_parse.c) is plain C; tests/fuzz/rtp_fuzz.c builds it alone.
        Extension(
            "streamgrid.capture._rtp",
            ["streamgrid/capture/_rtp.c", "streamgrid/capture/rtp_parse.c"],
            depends=["streamgrid/capture/rtp_parse.h"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
