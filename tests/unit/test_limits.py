"""Connection slots: taken once, given back once, however often a path tries."""

from __future__ import annotations

from pobox.net.limits import ConnectionLimiter, Slot, SlotLimiter


def test_a_slot_is_given_back_once() -> None:
    limiter = ConnectionLimiter("TEST", max_total=3, max_per_ip=2)
    first = limiter.acquire("10.0.0.1")
    second = limiter.acquire("10.0.0.1")
    assert isinstance(first, Slot) and isinstance(second, Slot)
    assert limiter.acquire("10.0.0.1") == "too many connections from 10.0.0.1 (2)"
    first.release()
    first.release()  # a second path that also ends the connection: no effect
    assert not first.held and second.held
    assert limiter.total == 1 and limiter.by_ip == {"10.0.0.1": 1}
    third = limiter.acquire("10.0.0.1")
    assert isinstance(third, Slot)
    assert limiter.acquire("10.0.0.2") != "" and limiter.total == 3
    assert limiter.acquire("10.0.0.3") == "too many connections (3)"
    snapshot = limiter.snapshot()
    assert snapshot["open"] == 3 and snapshot["refused"] == 2 and snapshot["accepted"] == 4
    assert snapshot["by_ip"] == {"10.0.0.1": 2, "10.0.0.2": 1}


def test_releasing_everything_leaves_nothing() -> None:
    limiter = ConnectionLimiter("TEST", max_total=100, max_per_ip=100)
    slots = [limiter.acquire(f"10.0.0.{n % 7}") for n in range(50)]
    for slot in slots + slots:
        assert isinstance(slot, Slot)
        slot.release()
    assert limiter.total == 0 and limiter.by_ip == {}


def test_slot_limiter_snapshot() -> None:
    slots = SlotLimiter(2)
    assert slots.acquire("a") and slots.acquire("a") and not slots.acquire("a")
    assert slots.acquire("b")
    assert slots.snapshot() == {"open": 3, "keys": 2, "max": 2}
    slots.release("a")
    slots.release("a")
    slots.release("b")
    assert slots.snapshot()["open"] == 0
