"""Objects as files under a root directory (the embedded runtime's store)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import ObjectStore, StoreError, store_error_text


@contextmanager
def _os_errors() -> Iterator[None]:
    """An OSError as StoreError, its strerror the reason ("No space left on device")."""
    try:
        yield
    except StoreError:
        raise
    except OSError as exc:
        raise StoreError(store_error_text(exc)) from exc


class DirectoryObjectStore(ObjectStore):
    """Objects as files under a root directory; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        with _os_errors():
            self.root = root.resolve()
            self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StoreError("key escapes the store root")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _os_errors():
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader (or a crash) never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def get(self, key: str) -> bytes | None:
        with _os_errors():
            try:
                return self._path(key).read_bytes()
            except FileNotFoundError:
                return None

    def delete(self, key: str) -> None:
        with _os_errors():
            self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        with _os_errors():
            base = self._path(prefix)
            if not base.is_dir():
                return
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith(".tmp-"):
                    yield path.relative_to(self.root).as_posix()

    def delete_prefix(self, prefix: str) -> None:
        super().delete_prefix(prefix)
        with _os_errors():
            base = self._path(prefix)
            for d in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
                d.rmdir()
            if base.is_dir():
                base.rmdir()

    def describe(self) -> str:
        return f"dir:{self.root}"
