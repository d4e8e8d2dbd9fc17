"""streamgrid: watch RTSP cameras, keep the brightest frames, return them as a grid."""

__version__ = "0.1.0"
