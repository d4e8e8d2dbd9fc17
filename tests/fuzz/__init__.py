"""The fuzzing harness of the C receive loop (streamgrid/capture/_rtp.c).

See docs/fuzzing.md: ``make fuzz`` runs it long, tests/fuzz/test_sanitized.py
runs it for a minute in CI, tests/unit/test_rtp_corpus.py replays the corpus.
"""
