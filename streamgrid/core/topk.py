"""The K brightest frames seen so far, in O(K) memory."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from .models import FrameRecord


@dataclass(order=True)
class _Entry:
    # Heap order: the weakest entry (lowest brightness, and among equals the
    # latest frame, since earlier frames win ties) sits at the root.
    brightness: float
    neg_seq: int
    record: FrameRecord = field(compare=False)


class TopK:
    """Keeps the ``k`` best FrameRecords.

    ``offer`` returns ``(entered, evicted)``: whether the new record was kept,
    and which record (if any) it pushed out.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self._heap: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._heap)

    def would_enter(self, brightness: float) -> bool:
        """Whether a frame newer than all kept ones with this score would be kept."""
        return len(self._heap) < self.k or brightness > self._heap[0].brightness

    def offer(self, record: FrameRecord) -> tuple[bool, FrameRecord | None]:
        entry = _Entry(record.brightness, -record.seq, record)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
            return True, None
        if entry > self._heap[0]:
            evicted = heapq.heapreplace(self._heap, entry)
            return True, evicted.record
        return False, None

    def records(self) -> list[FrameRecord]:
        """Kept records, brightest first (earlier first among equals)."""
        return sorted((e.record for e in self._heap), key=lambda r: r.rank_key)


def best(records: Iterable[FrameRecord], k: int) -> list[FrameRecord]:
    """The k best of any records, brightest first: the same order TopK keeps."""
    return sorted(records, key=lambda r: r.rank_key)[:k]
