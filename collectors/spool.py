"""The write spool: collected batches wait here until the store takes them.

A database write can fail (disk full, a lock, a bug). Collection must go on
and lose nothing, so every batch enters the spool first and leaves it only
when `Store.write_scrape` succeeded, oldest first. Batches beyond the memory
bound are spilled to disk as Arrow IPC files (and picked up again after a
restart); when the disk bound is hit too, the oldest batches are dropped and
counted, with a warning the sources page shows. The live scrapes and the
simulator's back-fill job share one spool; one flush writes at a time. Re-writing a batch is safe:
the store ignores samples it already holds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)

PARTS = ("samples", "devices", "events", "facility", "runs")


@dataclass
class Batch:
    """One flush's tables (any may be None), in memory or spilled to `path`."""

    tables: dict[str, pa.Table] | None
    rows: int
    nbytes: int
    created: float = field(default_factory=time.time)
    path: Path | None = None

    @classmethod
    def of(cls, **tables: pa.Table | None) -> "Batch":
        present = {k: t for k, t in tables.items() if t is not None and t.num_rows}
        rows = present["samples"].num_rows if "samples" in present else 0
        return cls(present, rows, sum(t.nbytes for t in present.values()))


@dataclass
class SpoolStats:
    pending_batches: int = 0
    pending_rows: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0
    dropped_batches: int = 0
    dropped_rows: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


class WriteSpool:
    def __init__(self, directory: str | os.PathLike | None = None, *, max_memory_bytes: int = 256 * 2**20,
                 max_disk_bytes: int = 2 * 2**30):
        self.directory = Path(directory) if directory else None
        self.max_memory = max_memory_bytes
        self.max_disk = max_disk_bytes
        self.queue: deque[Batch] = deque()
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()       # one writer at a time (scrapes and the back-fill job share it)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._recover()

    # ---- disk ---------------------------------------------------------------

    def _recover(self) -> None:
        """Batches spilled before a restart go back in the queue, oldest first."""
        assert self.directory is not None
        for d in sorted(p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith("batch-")):
            size = sum(f.stat().st_size for f in d.glob("*.arrow"))
            rows = int((d / "rows").read_text()) if (d / "rows").exists() else 0
            self.queue.append(Batch(None, rows, 0, d.stat().st_mtime, d))
            self.stats.disk_bytes += size
        if self.queue:
            log.warning("write spool: %d batch(es) from before the restart will be written first", len(self.queue))
        self._count()

    def _spill(self, b: Batch) -> None:
        assert self.directory is not None and b.tables is not None      # only in-memory batches spill, to a directory
        d = self.directory / f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = d.with_suffix(".tmp")
        tmp.mkdir()
        size = 0
        for name, table in b.tables.items():
            path = tmp / f"{name}.arrow"
            with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            size += path.stat().st_size
        (tmp / "rows").write_text(str(b.rows))
        tmp.rename(d)                                  # a half-written spill is never read back
        b.tables, b.path = None, d
        self.stats.disk_bytes += size

    def _load(self, b: Batch) -> dict[str, pa.Table]:
        if b.tables is not None:
            return b.tables
        assert b.path is not None                      # a batch is in memory or on disk
        tables = {}
        for name in PARTS:
            path = b.path / f"{name}.arrow"
            if path.exists():
                with pa.memory_map(str(path)) as src:
                    tables[name] = ipc.open_file(src).read_all()
        return tables

    def _forget(self, b: Batch) -> None:
        if b.path is not None:
            size = sum(f.stat().st_size for f in b.path.glob("*.arrow"))
            for f in b.path.iterdir():
                f.unlink()
            b.path.rmdir()
            self.stats.disk_bytes -= size

    # ---- queue --------------------------------------------------------------

    def _count(self) -> None:
        self.stats.pending_batches = len(self.queue)
        self.stats.pending_rows = sum(b.rows for b in self.queue)
        self.stats.memory_bytes = sum(b.nbytes for b in self.queue if b.tables is not None)

    def put(self, batch: Batch) -> None:
        with self._lock:
            self.queue.append(batch)
            self._enforce_bounds()
            self._count()

    def _enforce_bounds(self) -> None:
        mem = sum(b.nbytes for b in self.queue if b.tables is not None)
        for b in list(self.queue):                     # oldest in-memory batches spill first
            if mem <= self.max_memory:
                break
            if b.tables is None:
                continue
            mem -= b.nbytes
            if self.directory is not None:
                self._spill(b)
                b.nbytes = 0
            else:
                self._drop(b, "memory")
        while self.stats.disk_bytes > self.max_disk and self.queue:
            oldest = next((b for b in self.queue if b.path is not None), None)
            if oldest is None:
                break
            self._drop(oldest, "disk")

    def _drop(self, b: Batch, bound: str) -> None:
        self.queue.remove(b)
        self._forget(b)
        self.stats.dropped_batches += 1
        self.stats.dropped_rows += b.rows
        log.warning("write spool full (%s bound): dropped the oldest batch (%d samples); %d dropped so far",
                    bound, b.rows, self.stats.dropped_rows)

    def flush(self, write: Callable[..., int]) -> tuple[int, str | None]:
        """Write queued batches oldest first until one fails; return (samples stored, error)."""
        with self._flushing:
            return self._flush(write)

    def _flush(self, write: Callable[..., int]) -> tuple[int, str | None]:
        stored = 0
        while True:
            with self._lock:
                if not self.queue:
                    self._count()
                    return stored, None
                b = self.queue[0]
            try:
                stored += write(**self._load(b))
            except Exception as exc:
                with self._lock:
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    self.stats.last_error_at = time.time()
                    self._count()
                return stored, self.stats.last_error
            with self._lock:
                if self.queue and self.queue[0] is b:
                    self.queue.popleft()
                    self._forget(b)
                self._count()
