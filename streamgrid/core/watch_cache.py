"""Objects of one kind as a watch last showed them (or as our own writes
answered): the one watch cache, which the operator (VideoStreams and capture
Pods) and the gateway (VideoStreams) both keep, as client-go's informers do.

Readers read from here, never from the API server: at 10,000 streams a GET
of the stream and its pod per check was N/15 reads a second. Objects are
kept as compact JSON (a parsed dict costs five to ten times the memory of
its text) and handed out as fresh dicts, so no two threads share one; an
``on_change`` hook keeps whatever index a reader needs (the operator's
resync slots, the gateway's /list entries) in step, under the cache's lock.

Ordering: a newer resourceVersion wins. An object deleted leaves a
tombstone with the deletion's version for a while, so the answer of a
write that raced the watch (a create, a delete, a status patch whose
response arrives after the DELETED event) cannot bring it back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
TOMBSTONE_SECONDS = 300.0


def resource_version(obj: Obj) -> int | None:
    """resourceVersion as a number (etcd's revision), None when it is not one."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


def without_managed_fields(obj: Obj) -> Obj:
    """All but metadata.managedFields: a third of an object's size, and
    nothing here reads them."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


class ObjectCache:
    """One kind of object by (namespace, name); thread-safe."""

    def __init__(
        self,
        slim: Callable[[Obj], Obj],
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Key, Obj | None], None] | None = None,
    ) -> None:
        self._slim, self._clock, self._on_change = slim, clock, on_change
        self._items: dict[Key, tuple[int | None, bytes]] = {}
        self._gone: dict[Key, tuple[int | None, float]] = {}  # tombstones: version, when
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: Key) -> Obj | None:
        with self._lock:
            found = self._items.get(key)
        if found is None:
            return None
        value: Obj = json.loads(found[1])
        return value

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._items)

    def items(self) -> Iterator[tuple[Key, Obj]]:
        for key in self.keys():
            obj = self.get(key)
            if obj is not None:
                yield key, obj

    def put(self, obj: Obj) -> bool:
        """Keeps ``obj`` unless what is kept (or its deletion) is as new or
        newer; True when it was kept (a change to act on)."""
        key, version = key_of(obj), resource_version(obj)
        with self._lock:
            if self._stale(key, version):  # a re-list's unchanged objects: no encoding
                return False
        text = json.dumps(self._slim(obj), separators=(",", ":")).encode()
        with self._lock:
            if self._stale(key, version):
                return False
            self._items[key] = (version, text)
            self._gone.pop(key, None)
            # Under the lock: a DELETED event and a late answer must reach the
            # index in the order the cache took them.
            if self._on_change is not None:
                self._on_change(key, obj)
        return True

    def delete(self, obj: Obj) -> None:
        """The watch said DELETED (``obj`` carries the deletion's version),
        or we know it is gone (our DELETE's answer, a LIST without it)."""
        key, version = key_of(obj), resource_version(obj)
        now = self._clock()
        with self._lock:
            kept = self._items.pop(key, None)
            if kept is not None and version is not None and kept[0] is not None:
                version = max(version, kept[0])
            self._gone[key] = (version, now)
            if len(self._gone) > 1024:
                self._gone = {k: v for k, v in self._gone.items() if now - v[1] < TOMBSTONE_SECONDS}
            if self._on_change is not None:
                self._on_change(key, None)

    def replace_all(self, objs: list[Obj], list_version: int | None = None) -> list[Key]:
        """A fresh LIST (its collection's resourceVersion ``list_version``):
        what it holds, and nothing it does not, unless that is newer than the
        list (made since). Returns the keys dropped."""
        return self.replace_pages([(objs, list_version)])

    def replace_pages(self, pages: Iterable[tuple[list[Obj], int | None]]) -> list[Key]:
        """replace_all, a LIST's pages put in as they come (each with the
        list's resourceVersion), so the whole list is never held at once."""
        listed: set[Key] = set()
        list_version: int | None = None
        for objs, version in pages:
            list_version = version  # the same on every page: one snapshot
            for obj in objs:
                listed.add(key_of(obj))
                self.put(obj)
        dropped: list[Key] = []
        for key in self.keys():
            if key in listed:
                continue
            with self._lock:
                kept = self._items.get(key)
            if kept is None:
                continue
            if list_version is not None and kept[0] is not None and kept[0] > list_version:
                continue  # made since the list was taken
            meta = {"namespace": key[0], "name": key[1]}
            if list_version is not None:
                meta["resourceVersion"] = str(list_version)
            self.delete({"metadata": meta})
            dropped.append(key)
        return dropped

    def _stale(self, key: Key, version: int | None) -> bool:
        if version is None:
            return False  # not a number: the last word wins
        kept = self._items.get(key)
        if kept is not None and kept[0] is not None and version <= kept[0]:
            return True  # older, or the same again (a re-list): nothing new
        gone = self._gone.get(key)
        if gone is None:
            return False
        gone_version, when = gone
        if self._clock() - when > TOMBSTONE_SECONDS:
            return False
        return gone_version is not None and version <= gone_version
