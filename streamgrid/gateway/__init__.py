"""The HTTP API of ../shared/spec/api.md over a StreamBackend (local or cluster)."""
