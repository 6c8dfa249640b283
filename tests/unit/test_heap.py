"""Start-up objects are frozen out of the collector; later garbage is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.heap import freeze_startup_heap


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.collect()


class Node:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_new_cycles_still_collected() -> None:
    startup = Node()
    startup_ref = weakref.ref(startup)
    # Only compared to zero: another thread of the suite (the fakeredis server, when no Redis
    # is installed) can free a frozen object between two reads of the count.
    assert freeze_startup_heap() > 0
    del startup
    later = Node()
    later_ref = weakref.ref(later)
    del later
    gc.collect()
    assert later_ref() is None  # made after start-up: collected as before
    assert startup_ref() is not None  # frozen: the collector no longer walks it
    gc.unfreeze()
    gc.collect()
    assert startup_ref() is None
