"""The uninstall hook's logic: delete every stream, wait for the operator,
and clear finalizers only for what it did not finish by the deadline."""

from __future__ import annotations

from streamgrid.operator.uninstall import delete_all_streams


class FakeStreams:
    """Streams that disappear ``finish_after`` polls after deletion, unless stuck."""

    def __init__(self, names: list[str], stuck: set[str], finish_after: int = 2) -> None:
        self.live = list(names)
        self.stuck, self.finish_after = stuck, finish_after
        self.deleted: list[str] = []
        self.cleared: list[str] = []
        self.polls = 0

    def list_streams(self, namespace: str) -> list[str]:
        assert namespace == "ns"
        self.polls += 1
        if self.polls > self.finish_after:
            self.live = [n for n in self.live if n in self.stuck or n not in self.deleted]
        return list(self.live)

    def delete_stream(self, namespace: str, name: str) -> None:
        self.deleted.append(name)

    def clear_finalizers(self, namespace: str, name: str) -> None:
        self.cleared.append(name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_every_stream_is_deleted_and_none_forced_when_the_operator_finishes() -> None:
    api, clock = FakeStreams(["a", "b"], stuck=set()), FakeClock()
    forced = delete_all_streams(api, "ns", 10, clock, clock.sleep)
    assert api.deleted == ["a", "b"] and forced == [] and api.cleared == []
    assert clock.now < 10


def test_a_stream_the_operator_does_not_finish_has_its_finalizers_cleared() -> None:
    api, clock = FakeStreams(["a", "b"], stuck={"b"}), FakeClock()
    forced = delete_all_streams(api, "ns", 5, clock, clock.sleep)
    assert forced == ["b"] and api.cleared == ["b"]
    assert clock.now >= 5  # it waited the whole deadline first


def test_no_streams_means_no_wait() -> None:
    api, clock = FakeStreams([], stuck=set()), FakeClock()
    assert delete_all_streams(api, "ns", 30, clock, clock.sleep) == []
    assert clock.now == 0
