"""gc_paused: no collection during a bulk load, what it built frozen, GC state restored."""

from __future__ import annotations

import gc

from kmesh_node.sources.gcpause import gc_paused


def test_gc_is_off_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled(), "a caller's disabled GC was turned on"
    finally:
        gc.enable()


def test_objects_built_inside_are_frozen() -> None:
    before = gc.get_freeze_count()
    with gc_paused():
        kept = [[i] for i in range(1000)]  # lists are always GC-tracked
    assert gc.get_freeze_count() >= before + len(kept)


def test_restored_even_when_the_load_fails() -> None:
    try:
        with gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()
