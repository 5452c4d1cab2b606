"""The garbage-collector pause recorder the long-running services export (gc_pause_seconds)."""

from __future__ import annotations

import gc

from cardscore.core.gc_tuning import PauseRecorder


def test_a_collection_is_recorded_with_its_generation_and_length() -> None:
    recorder = PauseRecorder().start()
    try:
        recorder.drain()
        gc.collect(1)
        gc.collect()
        pauses = recorder.drain()
    finally:
        recorder.stop()
    assert [generation for generation, _ in pauses][-2:] == [1, 2]
    assert all(seconds >= 0 for _, seconds in pauses)
    assert recorder.drain() == []  # drained once


def test_a_stopped_recorder_records_nothing_and_leaves_no_callback() -> None:
    recorder = PauseRecorder().start()
    recorder.start()  # twice: still one callback
    assert sum(cb == recorder._on_collection for cb in gc.callbacks) == 1
    recorder.stop()
    gc.collect()
    assert recorder.drain() == [] and recorder._on_collection not in gc.callbacks
