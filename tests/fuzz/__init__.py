"""The fuzzing harnesses of the RTP parser (streamgrid/capture/rtp_parse.c) and
its binding (_rtp.c).

See docs/fuzzing.md: ``make fuzz`` runs the libFuzzer target (rtp_fuzz.c,
libfuzzer.py) long, tests/fuzz/test_libfuzzer.py and test_sanitized.py run it
and the Python driver for a minute each in CI, tests/unit/test_rtp_corpus.py
replays the .case corpus.
"""
