"""Memory stays bounded however many runs accumulate (the history lives on disk)."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from redengine_nb import RedEngine
from redengine_nb.testing import FakeClock


def _noop() -> None:
    pass


def test_memory_does_not_grow_with_the_number_of_runs(tmp_path: Path) -> None:
    clock = FakeClock("2024-03-11 09:00", tz="UTC")
    app = RedEngine(
        logs=tmp_path / "runs.db", clock=clock, task_execution="main", max_process_count=1
    )
    for i in range(10):
        app.task("every 1 second", func=_noop, name=f"t{i}")

    def run_ticks(n: int) -> None:
        for _ in range(n):
            clock.advance(1)
            app.session.tick()

    run_ticks(150)  # warm up: caches, prepared statements, lazily imported modules
    gc.collect()
    tracemalloc.start()
    try:
        run_ticks(100)
        gc.collect()
        early, _ = tracemalloc.get_traced_memory()
        run_ticks(900)  # 9,000 more runs
        gc.collect()
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert app.runlog.count("t0") == 1150
    # Linear growth would be hundreds of bytes per run (megabytes here); allow noise.
    assert late - early < 512 * 1024, f"grew by {late - early} bytes over 9,000 runs"
