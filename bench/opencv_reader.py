"""Baseline: OpenCV's VideoCapture reading an RTSP stream, brightness at ticks.

`read`: decode and convert every frame (what most scripts do);
`grab`: grab (decode) every frame, retrieve (convert) only at a tick.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

import cv2


def main() -> int:
    url, interval, how = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        print("cannot open", file=sys.stderr)
        return 1
    next_tick = time.monotonic()
    while True:
        if how == "read":
            ok, frame = capture.read()
        else:
            ok = capture.grab()
            frame = None
        if not ok:
            return 0
        if time.monotonic() >= next_tick:
            if frame is None:
                ok, frame = capture.retrieve()
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            print(f"sample {time.time():.3f} {float(gray.mean()):.2f}", flush=True)
            next_tick += interval


if __name__ == "__main__":
    sys.exit(main())
