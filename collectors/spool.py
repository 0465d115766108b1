"""The write spool: collected batches wait here until the store takes them.

A database write can fail (disk full, a lock, a bug). Collection must go on
and lose nothing, so every batch enters the spool first and leaves it only
when `Store.write_scrape` succeeded, oldest first. When a write fails, every
batch held in memory is spilled to disk at once (with a spool folder), so a
process killed while the store is down loses only what could not be spilled;
batches beyond the memory bound are spilled too, and `close()` spills what is
left at stop. Spilled batches are Arrow IPC files, written durably (each file
and the folder fsynced before and after the rename that makes the batch
visible) and picked up again after a restart. When the disk bound is hit, the
oldest batches are dropped and counted, with a warning the sources page shows.

A spilled batch that cannot be read back (what a power cut or a damaged disk
leaves: a 0-byte or truncated .arrow file, a missing or garbled rows file, an
interrupted spill) is moved to `quarantine/` beside the batches with a note of
why, counted and named in the stats (the sources page and /healthz show it); it
never blocks the batches behind it, at recovery or at a flush.

The live scrapes and the simulator's back-fill job share one spool; one flush
writes at a time. Re-writing a batch is safe: the store ignores samples it
already holds.
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
QUARANTINE = "quarantine"
QUARANTINE_SHOWN = 20        # the newest quarantined batches named in the stats (all are counted)


class DamagedBatch(Exception):
    """A spilled batch cannot be read back; the message says which file and why."""


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's data to the disk (a folder: its entries, e.g. a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    last_drop_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    spill_error: str | None = None             # the last spill that failed (the batch stayed in memory)
    quarantined_batches: int = 0               # damaged batches moved aside since start (or found there)
    quarantined_rows: int = 0                  # their samples, as their rows file says (when it could be read)
    quarantined: list[dict] = field(default_factory=list)   # newest first: {"file", "reason", "at"}


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
        """Batches spilled before a restart go back in the queue, oldest first; damaged ones
        (and spills a crash interrupted) go to quarantine. Batches quarantined earlier are
        counted again, so the page keeps naming them until someone moves them away."""
        assert self.directory is not None
        for d in sorted(self._quarantine_dir().glob("batch-*"), key=lambda p: p.name, reverse=True):
            if d.is_dir():
                note = d / "reason"
                reason = note.read_text(errors="replace").strip() if note.exists() else "unreadable"
                self._note_quarantine(d, reason, self._rows_of(d), d.stat().st_mtime, newest_first=False)
        for d in sorted(p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith("batch-")):
            if d.suffix == ".tmp":
                self._quarantine(d, "the spill was interrupted (the process stopped while writing it)")
                continue
            try:
                rows = self._check(d)
            except DamagedBatch as exc:
                self._quarantine(d, str(exc))
                continue
            size = sum(f.stat().st_size for f in d.glob("*.arrow"))
            self.queue.append(Batch(None, rows, 0, d.stat().st_mtime, d))
            self.stats.disk_bytes += size
        if self.queue:
            log.warning("write spool: %d batch(es) from before the restart will be written first", len(self.queue))
        self._count()

    @staticmethod
    def _rows_of(d: Path) -> int:
        try:
            return int((d / "rows").read_text())
        except (OSError, ValueError):
            return 0

    def _check(self, d: Path) -> int:
        """A spilled batch's sample count, after checking that its files can be opened (the
        footer of each Arrow file is read, not its data); DamagedBatch says what is wrong."""
        try:
            rows = int((d / "rows").read_text())
        except FileNotFoundError:
            raise DamagedBatch(f"{d.name}/rows is missing") from None
        except (OSError, ValueError) as exc:
            raise DamagedBatch(f"{d.name}/rows is unreadable: {exc}") from None
        for f in sorted(d.glob("*.arrow")):
            if f.stem not in PARTS:
                raise DamagedBatch(f"{d.name}/{f.name} is not a spool file")
            try:
                with pa.memory_map(str(f)) as src:
                    ipc.open_file(src)
            except (OSError, pa.ArrowException) as exc:
                raise DamagedBatch(f"{d.name}/{f.name}: {type(exc).__name__}: {exc}") from None
        return rows

    def _quarantine_dir(self) -> Path:
        assert self.directory is not None
        return self.directory / QUARANTINE

    def _quarantine(self, d: Path, reason: str) -> None:
        """Move a damaged batch folder aside (with a note of why) so the queue goes on."""
        rows = self._rows_of(d)
        qdir = self._quarantine_dir()
        dest = qdir / d.name.removesuffix(".tmp")
        try:
            qdir.mkdir(exist_ok=True)
            if dest.exists():
                dest = dest.with_name(f"{dest.name}-{uuid.uuid4().hex[:8]}")
            d.rename(dest)
            _fsync(qdir)
            _fsync(qdir.parent)
            (dest / "reason").write_text(reason + "\n")
        except OSError as exc:                # e.g. the disk is full too: named where it lies, tried again at restart
            if not dest.exists():
                dest = d
            reason = f"{reason} (could not be moved to {qdir}: {exc})"
        self._note_quarantine(dest, reason, rows, time.time())
        log.error("write spool: moved a damaged batch (%d samples) to %s: %s", rows, dest, reason)

    def _note_quarantine(self, d: Path, reason: str, rows: int, at: float, newest_first: bool = True) -> None:
        self.stats.quarantined_batches += 1
        self.stats.quarantined_rows += rows
        entry = {"file": str(d), "reason": reason, "at": at}
        if newest_first:
            self.stats.quarantined.insert(0, entry)
        else:
            self.stats.quarantined.append(entry)
        del self.stats.quarantined[QUARANTINE_SHOWN:]

    def _spill(self, b: Batch) -> None:
        """Write an in-memory batch to the spool folder durably: every file and the temporary
        folder are fsynced before the rename that makes the batch visible, and the spool folder
        after it, so a power cut leaves either the whole batch or an ignored .tmp folder. A failed
        spill (disk full) removes its partial files and raises; the batch stays in memory."""
        assert self.directory is not None and b.tables is not None      # only in-memory batches spill, to a directory
        # named by creation time, so recovery keeps the order batches were collected in
        d = self.directory / f"batch-{int(b.created * 1e9):020d}-{uuid.uuid4().hex[:8]}"
        tmp = d.with_suffix(".tmp")
        tmp.mkdir()
        try:
            size = 0
            for name, table in b.tables.items():
                path = tmp / f"{name}.arrow"
                with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
                _fsync(path)
                size += path.stat().st_size
            (tmp / "rows").write_text(str(b.rows))
            _fsync(tmp / "rows")
            _fsync(tmp)
            tmp.rename(d)                                  # a half-written spill is never read back
        except BaseException:
            for f in tmp.glob("*"):
                f.unlink(missing_ok=True)
            tmp.rmdir()
            raise
        _fsync(self.directory)
        b.tables, b.path, b.nbytes = None, d, 0
        self.stats.disk_bytes += size

    def spill_memory(self) -> int:
        """Spill every batch held in memory (oldest first); return how many are still only in
        memory (none, unless there is no spool folder or the disk refuses)."""
        with self._lock:
            return self._spill_memory()

    def _spill_memory(self) -> int:
        left = [b for b in self.queue if b.tables is not None]
        if self.directory is None:
            return len(left)
        for b in left:
            try:
                self._spill(b)
            except Exception as exc:
                self.stats.spill_error = f"{type(exc).__name__}: {exc}"
                log.error("write spool: could not spill to %s, %d batch(es) stay in memory: %s",
                          self.directory, sum(1 for x in self.queue if x.tables is not None), self.stats.spill_error)
                break
        else:
            self.stats.spill_error = None
        self._count()
        return sum(1 for b in self.queue if b.tables is not None)

    def _load(self, b: Batch) -> dict[str, pa.Table]:
        with self._lock:                               # a spill moves a batch from memory to disk under the lock
            held, where = b.tables, b.path
        if held is not None:
            return held
        assert where is not None                       # a batch is in memory or on disk
        tables = {}
        for name in PARTS:
            path = where / f"{name}.arrow"
            if path.exists():
                try:
                    with pa.memory_map(str(path)) as src:
                        tables[name] = ipc.open_file(src).read_all()
                except (OSError, pa.ArrowException) as exc:
                    raise DamagedBatch(f"{where.name}/{path.name}: {type(exc).__name__}: {exc}") from None
        if not (where / "rows").exists():
            raise DamagedBatch(f"{where.name}/rows is missing")
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
                try:
                    self._spill(b)
                    continue
                except Exception as exc:
                    self.stats.spill_error = f"{type(exc).__name__}: {exc}"
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
        self.stats.last_drop_at = time.time()
        log.warning("write spool full (%s bound): dropped the oldest batch (%d samples); %d dropped so far",
                    bound, b.rows, self.stats.dropped_rows)

    def flush(self, write: Callable[..., int]) -> tuple[int, str | None]:
        """Write queued batches oldest first until one fails; return (samples stored, error).
        After a failed write, what is held in memory is spilled to disk (`spill_memory`)."""
        with self._flushing:
            stored, error = self._flush(write)
        if error is not None:
            self.spill_memory()
        return stored, error

    def close(self, write: Callable[..., int]) -> int:
        """At stop: a last flush, and what still cannot be stored is spilled to disk. Returns
        the batches left only in memory, lost with the process (none with a working spool folder)."""
        self.flush(write)
        left = self.spill_memory()
        if left:
            log.error("write spool: %d batch(es) (%d samples) could not be stored or spilled and are lost at stop",
                      left, sum(b.rows for b in self.queue if b.tables is not None))
        elif self.queue:
            log.warning("write spool: %d batch(es) left in %s; they are written first at the next start",
                        len(self.queue), self.directory)
        return left

    def _flush(self, write: Callable[..., int]) -> tuple[int, str | None]:
        stored = 0
        while True:
            with self._lock:
                if not self.queue:
                    self._count()
                    return stored, None
                b = self.queue[0]
            try:
                tables = self._load(b)
            except DamagedBatch as exc:                # moved aside; the batches behind it go on
                with self._lock:
                    if self.queue and self.queue[0] is b:
                        self.queue.popleft()
                        assert b.path is not None              # only spilled batches can be damaged
                        self.stats.disk_bytes -= sum(f.stat().st_size for f in b.path.glob("*.arrow"))
                        self._quarantine(b.path, str(exc))
                    self._count()
                continue
            try:
                stored += write(**tables)
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
