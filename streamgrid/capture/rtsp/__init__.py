"""Our own RTSP client: the conversation with one camera, in plain Python.

Why not FFmpeg's: with FFmpeg's RTSP demuxer, even driven from C (a loop
over PyAV's libavformat, since removed), a worker costs what the ffmpeg
binary does to demux (three ``recv()`` calls per RTP packet, each after its
own ``poll()``) plus the keyframe decode. This client hands the connection to the C receive loop
(``_rtp.c``), which takes a whole burst per ``recv()``: a 720p25 worker at
0.97-1.07 % of a core against 1.43-1.60 % with FFmpeg's demux in C, run side
by side (docs/benchmarks.md, "Where a worker's CPU goes"). It also follows
redirects itself, so the credentials go to no other host than the one they
were given for. Cameras it does not read go to FFmpeg (capture/source.py).

- ``errors``: what reading a camera raises, and its text fit for a reason
- ``urls``: rtsp:// URLs split from their credentials, joined, made sendable
- ``auth``: Basic and Digest authorization
- ``sdp``: the video track chosen from the session description
- ``answers``: an answer's head and its Session and Transport headers
- ``session``: ``RtspSession``, the conversation itself, redirects included
"""
