"""The object-store protocol the frame store needs, and its one error."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from ..urls import mask_secrets


class StoreError(OSError):
    """A store call failed; the message is one short line, fit for a status
    reason. Every adapter raises only this (an I/O failure: an OSError too)."""


def store_error_text(exc: BaseException) -> str:
    """Why a store call failed, in one short line for a status reason: an
    OSError's strerror ("No space left on device", without "[Errno 28]"),
    else the client's own text (S3), credentials masked."""
    strerror = exc.strerror if isinstance(exc, OSError) else None
    text = " ".join(str(strerror or exc).split())
    return mask_secrets(text)[:300] or type(exc).__name__


class ObjectStore(ABC):
    """The few object operations the frame store needs. Every method raises
    only StoreError."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (which ends with '/')."""

    def delete_prefix(self, prefix: str) -> None:
        for key in list(self.list(prefix)):
            self.delete(key)

    def describe(self) -> str:
        return type(self).__name__

    def ensure_ready(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Create what must exist before the first write (S3: the bucket)."""
