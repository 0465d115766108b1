"""NVML collector: this host's NVIDIA GPUs, read through NVML (nvidia-ml-py), as canonical rows.

What it reads, per GPU and scrape: utilisation, memory (bytes -> MiB), power (mW -> W),
the energy counter (mJ since driver load -> J; deltas through the EventTracker),
GPU and memory temperature, SM and memory clocks, the clocks-event (throttle)
reasons, ECC counts (single/double bit, volatile/aggregate), row remapping
(correctable, uncorrectable, pending, failed) and the number of compute
processes. XID critical errors arrive on an NVML event set that a thread of
its own (`start()` / `stop()`) waits on; each becomes one `device_events` row
in the next scrape, and the device's `xid_last` shows the last one seen.

Why it looks the way it does:

- Ids and names follow dcgm-exporter (`exposition.device_identity`; a MIG
  instance is `<GPU UUID>/<GPU instance id>` with a `1g.10gb`-style profile;
  instances repeat their board's power, energy, temperature and error
  counters), so a GPU read both ways is one device, and the SQL that folds MIG
  instances into their board works for both.
- Every NVML call goes through `_call`, and the call's mode decides what an
  error means (`_MODES`): "no value" errors are NULL for that field only, a
  lost GPU is left out of the scrape and reported, anything else unexpected is
  a logged NULL, and a missing library or driver is a `ScrapeError` that
  starts "NVML not available on this host: ". NVML is initialised lazily and
  again after such a failure, so a driver loaded later is picked up.
- XIDs are events, not a polled value: two XIDs between scrapes are two rows,
  stamped when seen. The `xid_last` column is therefore added after the
  EventTracker has looked at the batch; the tracker would otherwise report
  the change of `xid_last` as a second event (and, for the same reason, the
  collector itself drops the tracker's double-bit ECC event when an ECC XID of
  the same scrape already reports it). `xid_last` is NULL (unknown) for a GPU
  whose XIDs nobody is watching, 0 while none has been seen; the last one
  survives a restart through the tracker the runtime primes from the store.
- The tracker reports a device that was in the previous scrape and is missing
  now. A GPU lost before it was ever collected has no previous scrape, so the
  collector reports that one itself, once, under its UUID or, when even that
  cannot be read, `<host>/gpu<index>` (device_identity's fallback rule).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import pyarrow as pa

from collectors.batch import ECC_XIDS, EVENT_SCHEMA, BatchBuilder, EventTracker, Scrape
from collectors.exposition import DeviceBatch, ParseStats, device_identity, finish_columns
from collectors.kinds.base import Collector
from collectors.targets import ScrapeError, Target
from config import Config
from config.canonical import LABEL_ROLES
from i18n import t

log = logging.getLogger(__name__)

UNAVAILABLE = "NVML not available on this host"
MIB = 1024 * 1024
# nvmlEventData_t.gpuInstanceId of an XID that belongs to no MIG instance
NO_INSTANCE = 0xFFFFFFFF
# device_identity reads the roles from keys of the same name
_ROLES: dict[str, tuple[str, ...]] = {role: (role,) for role in LABEL_ROLES}
# a MIG device's name ends in its profile: "NVIDIA H100 80GB HBM3 MIG 1g.10gb"; a compute
# instance's "MIG 1c.3g.40gb" belongs to GPU instance profile 3g.40gb, which dcgm-exporter prints
_MIG_PROFILE = re.compile(r"\bMIG\s+(?:\d+c\.)?(\S+)\s*$")
# nvmlValue_t member by NVML_VALUE_TYPE_* (0..6)
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
_ECC_COUNTERS = {      # column -> (memory error type, counter type)
    "ecc_sbe_volatile": ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC"),
    "ecc_dbe_volatile": ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC"),
    "ecc_sbe_aggregate": ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC"),
    "ecc_dbe_aggregate": ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC"),
}
# nvmlDeviceGetRemappedRows returns (correctable, uncorrectable, pending, failure)
_REMAP_COLUMNS = ("remapped_rows_correctable", "remapped_rows_uncorrectable", "row_remap_pending",
                  "row_remap_failed")

# pynvml raises NVMLError_<Name>; the kind of each, for _MODES
_ERROR_KINDS = {
    "unavailable": ("Uninitialized", "LibraryNotFound", "DriverNotLoaded", "LibRmVersionMismatch"),
    "lost": ("GpuIsLost", "GpuNotFound", "ResetRequired"),
    "no_value": ("NotSupported", "NoPermission", "NotFound", "FunctionNotFound", "NoData", "NotReady",
                 "Timeout", "ArgumentVersionMismatch", "Deprecated", "VgpuEccNotSupported"),
}
_HINTS = {
    "LibraryNotFound": "is the NVIDIA driver installed?",
    "DriverNotLoaded": "is the nvidia kernel module loaded?",
    "LibRmVersionMismatch": "the driver was upgraded without reloading its kernel module; reboot the host",
}
NULL, LOST, NOTE, FAIL = "null", "lost", "note", "fail"
# what an error of each kind does to a call, by the call's mode:
#   NULL: no value (a later fallback name is tried first); NOTE: no value, logged once;
#   LOST: the GPU is left out of this scrape; FAIL: ScrapeError, and NVML is initialised again next time
_MODES = {
    "field": {"unavailable": FAIL, "lost": LOST, "no_value": NULL, "other": NOTE},   # one value of one GPU
    "gpu": {"unavailable": FAIL, "lost": LOST, "no_value": LOST, "other": LOST},     # the GPU needs it
    "system": {"unavailable": FAIL, "lost": FAIL, "no_value": NULL, "other": FAIL},  # host-wide
    "init": {"unavailable": FAIL, "lost": FAIL, "no_value": FAIL, "other": FAIL},
}


class GpuLost(Exception):
    """A GPU fell off the bus, needs a reset, or cannot be identified; the message says which."""


@dataclass(frozen=True)
class SeenXid:
    uuid: str | None
    gpu_index: int | None
    instance: int | None       # GPU instance id, for an XID of one MIG instance
    code: int
    seen: float                # epoch seconds


def unavailable_message(exc: BaseException) -> str:
    hint = _HINTS.get(type(exc).__name__.removeprefix("NVMLError_"))
    return t("msg.nvml_unavailable", "en", detail=f"{exc}" + (f" ({hint})" if hint else ""))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _scaled(value: float | None, factor: float = 1.0) -> float | None:
    return None if value is None else value * factor


def _handle_key(handle: Any) -> int:
    """NVML hands the same device back as a new ctypes pointer object: key handles by address."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value or 0
    except (ctypes.ArgumentError, TypeError):
        return id(handle)          # not a ctypes pointer (an NVML double's handle): its identity


class NvmlCollector(Collector):
    """The local GPUs through NVML (see module docstring); one target, `nvml://<host>`.

    `NvmlCollector(cfg, host=...)` takes its builder and retry interval from a Config;
    without one, give `builder` and `retry_s` (as `for_source` does)."""

    kind = "nvml"
    vendor = "nvidia"
    module_name = "pynvml"          # imported on first use when no `nvml` is given
    EVENT_WAIT_MS = 250             # the XID watch wakes this often to notice stop()

    def __init__(self, cfg: Config | None = None, *, host: str, tracker: EventTracker | None = None,
                 nvml: Any = None, clock: Callable[[], float] = time.time, builder: BatchBuilder | None = None,
                 retry_s: float | None = None):
        if cfg is not None:
            builder = builder or BatchBuilder(cfg, self.vendor)
            retry_s = cfg.collection.interval_s if retry_s is None else retry_s
        if builder is None or retry_s is None:
            raise TypeError("NvmlCollector: give a Config, or a builder and retry_s")
        self.host = host
        self.tracker = tracker or EventTracker()
        self.builder = builder
        self.clock = clock
        self.retry_s = retry_s
        self.nvml: Any = None
        self._kinds: dict[str, tuple[type, ...]] = {}
        self._nvml_error: type[BaseException] | tuple[type[BaseException], ...] = ()
        if nvml is not None:
            self._bind(nvml)
        self._ready = False
        self._init_lock = threading.Lock()
        self._lock = threading.Lock()              # XIDs and watched GPUs, shared with the watch thread
        self._xids: list[SeenXid] = []
        self._watched: set[str] = set()            # UUIDs whose XIDs the event set reports
        self._watching: dict[int, tuple[str, int]] = {}   # handle key -> (UUID, index)
        self._event_set: Any = None
        # device or board -> (seen, last XID); kept across restarts through the primed tracker
        self._xid_state: dict[str, tuple[float, int]] = {dev: (0.0, x) for dev, x in self.tracker.xid.items() if x}
        self._last_ids: dict[int, list[str]] = {}  # GPU index -> its device ids when last collected
        self._unseen_lost: dict[int, str] = {}     # GPU index -> id it was reported lost under, never collected
        self._noted: set[tuple[str, str]] = set()
        self.read_errors = 0                       # unexpected NVML errors stored as NULL
        self._failed_reads: dict[str, str] = {}    # this scrape's: function -> error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_source(cls, source, deps, *, host: str, nvml: Any = None) -> NvmlCollector:
        """The collector of a configured nvml source (NVML is retried every collection interval)."""
        return cls(host=host, tracker=deps.tracker, nvml=nvml, clock=deps.clock,
                   builder=BatchBuilder.explicit(deps.catalogue, deps.attributor, cls.vendor),
                   retry_s=deps.collection.interval_s)

    # ---- the one NVML wrapper -----------------------------------------

    def _bind(self, nvml: Any) -> None:
        self.nvml = nvml
        self._nvml_error = nvml.NVMLError
        self._kinds = {kind: tuple(getattr(nvml, f"NVMLError_{n}") for n in names
                                   if hasattr(nvml, f"NVMLError_{n}"))
                       for kind, names in _ERROR_KINDS.items()}

    def _kind(self, exc: BaseException) -> str:
        return next((kind for kind, classes in self._kinds.items() if isinstance(exc, classes)), "other")

    def _call(self, fn: str | tuple[str, ...], *args: Any, mode: str = "field") -> Any:
        """Call NVML function `fn` (or the first of several names that the binding and the driver
        have) with `args`; what an error does depends on `mode` (see _MODES)."""
        outcome: str = NULL
        error: BaseException | None = None
        names: tuple[str, ...] = (fn,) if isinstance(fn, str) else fn
        name = names[0]
        for name in names:
            func = getattr(self.nvml, name, None)
            if func is None:
                continue
            try:
                return func(*args)
            except self._nvml_error as exc:
                error, outcome = exc, _MODES[mode][self._kind(exc)]
                if outcome != NULL:
                    break
        if outcome == LOST:
            raise GpuLost(str(error))
        if outcome == FAIL:
            self._ready = False
            raise ScrapeError(unavailable_message(error or RuntimeError(name)))
        if outcome == NOTE:
            self.read_errors += 1
            self._failed_reads[name] = str(error)
            self._warn_once(name, error, f"NVML {name} failed on {self.host}: {error}; stored as NULL")
        return None

    def _warn_once(self, what: str, exc: BaseException | None, message: str) -> None:
        key = (what, type(exc).__name__)
        if key not in self._noted:
            self._noted.add(key)
            log.warning(message)

    def _ensure_nvml(self) -> None:
        with self._init_lock:
            if self._ready:
                return
            if self.nvml is None:
                try:
                    self._bind(importlib.import_module(self.module_name))
                except ImportError as exc:
                    raise ScrapeError(t("msg.nvml_no_module", "en", module=self.module_name, detail=exc)) from None
            self._call("nvmlInit", mode="init")
            self._ready = True

    # ---- scraping ------------------------------------------------------

    def collect(self, target: Target, ts: datetime) -> Scrape:
        """Read every GPU of this host. Raises ScrapeError when NVML is not available."""
        t0 = time.perf_counter()
        self._failed_reads = {}
        self._ensure_nvml()
        driver = self._call("nvmlSystemGetDriverVersion")
        rows: list[tuple[str, dict, dict]] = []
        lost: dict[int, tuple[str | None, str]] = {}
        for index in range(self._call("nvmlDeviceGetCount", mode="system") or 0):
            uuid = None
            try:
                handle = self._call("nvmlDeviceGetHandleByIndex", index, mode="gpu")
                uuid = self._call("nvmlDeviceGetUUID", handle, mode="gpu")
                gpu_rows = self._read_gpu(handle, uuid, index, driver)
            except GpuLost as exc:
                lost[index] = (uuid, str(exc))
                continue
            rows.extend(gpu_rows)
        batch = DeviceBatch([r[0] for r in rows], [r[1] for r in rows],
                            {c: [r[2][c] for r in rows] for c in (rows[0][2] if rows else ())},
                            [None] * len(rows), ParseStats())
        finish_columns(batch.columns, batch.ids, batch.stats)
        batch.columns["energy_delta_j"] = self.tracker.energy_deltas(batch)
        xids = self._xid_events(target, set(batch.ids))
        # before xid_last is filled (see module docstring); a DBE rise that an ECC XID of this
        # scrape reports is the same incident, as the tracker treats one it sees in xid_last
        events = self.tracker.observe(target, ts, batch,
                                      ecc_xid_devices={e["device_id"] for e in xids if e["code"] in ECC_XIDS})
        events += self._presence_events(lost, rows, events, target, ts)
        self._fill_xid_last(batch)
        events += xids
        scrape = self.builder.build(batch, target, ts)
        scrape.events = pa.Table.from_pylist(events, schema=EVENT_SCHEMA) if events else None
        scrape.parse_s = time.perf_counter() - t0
        if self._failed_reads:
            scrape.notes.append(t("msg.nvml_reads_failed", "en", reads="; ".join(
                f"{n}: {e}" for n, e in sorted(self._failed_reads.items()))))
        return scrape

    def _read_gpu(self, handle: Any, uuid: str, index: int, driver: str | None) -> list[tuple[str, dict, dict]]:
        """(device id, identity, values) for the GPU, or for each of its MIG instances."""
        pci = self._call(("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo"), handle)
        identity = {"uuid": uuid, "gpu_index": str(index), "model": self._call("nvmlDeviceGetName", handle),
                    "pci_bus_id": None if pci is None else _text(pci.busId), "driver_version": driver}
        board = self._board_values(handle)
        rows = []
        whole: list[tuple[str | None, str | None, Any]] = [(None, None, handle)]
        for instance, profile, device in self._mig_instances(handle) or whole:
            labels: dict[str, Any] = {**identity, "mig_instance": instance, "mig_profile": profile}
            dev_id, meta = device_identity(labels, _ROLES, self.host)
            rows.append((dev_id, meta, {**board, **self._device_values(device)}))
        return rows

    def _board_values(self, h: Any) -> dict[str, float | int | None]:
        """What belongs to the physical board; MIG instances repeat it, as dcgm-exporter does."""
        n = self.nvml
        values = {
            "power_w": _scaled(self._call("nvmlDeviceGetPowerUsage", h), 1e-3),
            "energy_j": _scaled(self._call("nvmlDeviceGetTotalEnergyConsumption", h), 1e-3),
            "temp_c": _scaled(self._call("nvmlDeviceGetTemperature", h, n.NVML_TEMPERATURE_GPU)),
            "mem_temp_c": self._field_value(h, n.NVML_FI_DEV_MEMORY_TEMP),
            "sm_clock_mhz": _scaled(self._call("nvmlDeviceGetClockInfo", h, n.NVML_CLOCK_SM)),
            "mem_clock_mhz": _scaled(self._call("nvmlDeviceGetClockInfo", h, n.NVML_CLOCK_MEM)),
            "throttle_reasons": self._call(("nvmlDeviceGetCurrentClocksEventReasons",
                                            "nvmlDeviceGetCurrentClocksThrottleReasons"), h),
        }
        for column, (error_type, counter) in _ECC_COUNTERS.items():
            values[column] = self._call("nvmlDeviceGetTotalEccErrors", h, getattr(n, error_type), getattr(n, counter))
        remapped = self._call("nvmlDeviceGetRemappedRows", h)
        values.update(zip(_REMAP_COLUMNS, remapped or (None,) * len(_REMAP_COLUMNS)))
        return values

    def _device_values(self, h: Any) -> dict[str, float | int | None]:
        """What a MIG instance has of its own (a whole GPU: the same calls on its handle)."""
        memory = self._call("nvmlDeviceGetMemoryInfo", h)
        util = self._call("nvmlDeviceGetUtilizationRates", h)      # not supported on a MIG instance
        # versioned names: the unversioned one raises a non-NVML error when the driver is older
        processes = self._call(("nvmlDeviceGetComputeRunningProcesses_v3",
                                "nvmlDeviceGetComputeRunningProcesses_v2"), h)
        return {
            "util_pct": None if util is None else float(util.gpu),
            "mem_used_mib": None if memory is None else memory.used / MIB,
            "mem_free_mib": None if memory is None else memory.free / MIB,
            "processes": None if processes is None else len(processes),
        }

    def _field_value(self, h: Any, field_id: int) -> float | None:
        values = self._call("nvmlDeviceGetFieldValues", h, [field_id])
        if not values or values[0].nvmlReturn != self.nvml.NVML_SUCCESS:
            return None                # each field answers for itself; a failed one has no value
        value = values[0]
        return float(getattr(value.value, _VALUE_MEMBERS[value.valueType]))

    def _mig_instances(self, h: Any) -> list[tuple[str, str | None, Any]]:
        """(GPU instance id, profile, MIG device handle) of each GPU instance; [] without MIG."""
        mode = self._call("nvmlDeviceGetMigMode", h)
        if not mode or mode[0] != self.nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        instances: dict[str, tuple[str, str | None, Any]] = {}
        for slot in range(self._call("nvmlDeviceGetMaxMigDeviceCount", h) or 0):
            mig = self._call("nvmlDeviceGetMigDeviceHandleByIndex", h, slot)
            instance = None if mig is None else self._call("nvmlDeviceGetGpuInstanceId", mig)
            if instance is None or str(instance) in instances:
                continue               # an empty slot, or another compute instance of the same GPU instance
            match = _MIG_PROFILE.search(self._call("nvmlDeviceGetName", mig) or "")
            instances[str(instance)] = (str(instance), match.group(1) if match else None, mig)
        return list(instances.values())

    # ---- events --------------------------------------------------------

    def _event(self, target: Target, ts: datetime, device_id: str | None, gpu_index: int | None, kind: str,
               code: int | None = None, detail: str | None = None) -> dict:
        return {"ts": ts, "device_id": device_id, "site": target.site, "cluster": target.cluster,
                "host": self.host, "gpu_index": gpu_index, "kind": kind, "code": code, "detail": detail,
                "source": target.source}

    def _presence_events(self, lost: dict[int, tuple[str | None, str]], rows: list, tracked: list[dict],
                         target: Target, ts: datetime) -> list[dict]:
        """Lost GPUs the tracker cannot know about (never collected) and their return; gives the
        tracker's own "lost" events the reason NVML named."""
        events, reasons = [], {}
        for index, (uuid, reason) in lost.items():
            if index in self._last_ids:            # collected before: the tracker reports it, once
                reasons.update(dict.fromkeys(self._last_ids[index], reason))
            elif index not in self._unseen_lost:
                self._unseen_lost[index] = uuid or f"{self.host}/gpu{index}"
                events.append(self._event(target, ts, self._unseen_lost[index], index, "lost", detail=reason))
        for e in tracked:
            if e["kind"] == "lost" and e["device_id"] in reasons:
                e["detail"] = reasons[e["device_id"]]
        collected: dict[int, list[str]] = {}
        for dev_id, meta, _ in rows:
            collected.setdefault(meta["gpu_index"], []).append(dev_id)
        for index, ids in collected.items():
            self._last_ids[index] = ids
            if index in self._unseen_lost:
                events.append(self._event(target, ts, self._unseen_lost.pop(index), index, "back"))
        return events

    def _xid_events(self, target: Target, present: set[str]) -> list[dict]:
        """One event per XID seen since the last scrape (on the MIG instance when it is one of
        `present`, else on its GPU)."""
        with self._lock:
            seen, self._xids = self._xids, []
        events = []
        for x in seen:
            instance = f"{x.uuid}/{x.instance}"
            key = instance if x.instance is not None and instance in present else x.uuid
            if key is not None:
                self._xid_state[key] = (x.seen, x.code)
            events.append(self._event(target, datetime.fromtimestamp(x.seen, timezone.utc), key, x.gpu_index,
                                      "xid", x.code))
        return events

    def _fill_xid_last(self, batch: DeviceBatch) -> None:
        """The batch's xid_last column: each device's newest XID (0: none since watching began)."""
        with self._lock:
            watched = set(self._watched)
        latest: list[float | None] = []
        for dev_id, meta in zip(batch.ids, batch.meta):
            if meta["uuid"] not in watched:
                latest.append(None)            # nobody is listening for this GPU's XIDs: unknown
                continue
            parent: Any = meta["mig_parent"]
            known = [s for s in (self._xid_state.get(dev_id), self._xid_state.get(parent)) if s]
            latest.append(max(known)[1] if known else 0)
        batch.columns["xid_last"] = latest

    # ---- the XID watch -------------------------------------------------

    def start(self) -> None:
        """Start watching for XIDs on a thread of its own (NVML is initialised there, retried if absent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name=f"nvml-xid-{self.host}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        self.stop()
        with self._init_lock, contextlib.suppress(ScrapeError):
            if self._ready:
                self._ready = False
                self._call("nvmlShutdown", mode="system")

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    ok = self.poll_xids()
                except Exception:      # never let the thread die silently
                    log.exception("NVML XID watch on %s failed", self.host)
                    ok = False
                if not ok:
                    self._stop.wait(self.retry_s)
        finally:
            self._drop_event_set()

    def poll_xids(self, timeout_ms: int | None = None) -> bool:
        """Wait up to `timeout_ms` for one XID and keep it for the next scrape. False while NVML
        or its event set is not available (the watch tries again after a scrape interval)."""
        try:
            if self._event_set is None:
                self._ensure_nvml()
                self._register()
            data = self._call("nvmlEventSetWait", self._event_set,
                              self.EVENT_WAIT_MS if timeout_ms is None else timeout_ms, mode="system")
        except (ScrapeError, GpuLost) as exc:
            self._drop_event_set()
            self._warn_once("xid-watch", exc, f"XID watch on {self.host} paused: {exc}")
            return False
        if data is not None and data.eventType & self.nvml.nvmlEventTypeXidCriticalError:
            self._record(data)
        return True

    def _register(self) -> None:
        self._event_set = self._call("nvmlEventSetCreate", mode="system")
        if self._event_set is None:
            raise ScrapeError(t("msg.nvml_no_events", "en"))
        watching = {}
        for index in range(self._call("nvmlDeviceGetCount", mode="system") or 0):
            try:
                handle = self._call("nvmlDeviceGetHandleByIndex", index, mode="gpu")
                uuid = self._call("nvmlDeviceGetUUID", handle, mode="gpu")
                self._call("nvmlDeviceRegisterEvents", handle, self.nvml.nvmlEventTypeXidCriticalError,
                           self._event_set, mode="gpu")
            except GpuLost as exc:             # its xid_last stays NULL
                self._warn_once(f"xid-register-{index}", exc, f"no XID events from GPU {index} on {self.host}: {exc}")
                continue
            watching[_handle_key(handle)] = (uuid, index)
        self._watching = watching
        with self._lock:
            self._watched = {uuid for uuid, _ in watching.values()}

    def _drop_event_set(self) -> None:
        event_set, self._event_set = self._event_set, None
        with self._lock:
            self._watched = set()
        if event_set is not None:
            with contextlib.suppress(ScrapeError, GpuLost):
                self._call("nvmlEventSetFree", event_set)

    def _record(self, data: Any) -> None:
        uuid, index = self._watching.get(_handle_key(data.device), (None, None))
        if uuid is None:
            with contextlib.suppress(GpuLost):
                uuid = self._call("nvmlDeviceGetUUID", data.device)
        instance = getattr(data, "gpuInstanceId", NO_INSTANCE)
        with self._lock:
            self._xids.append(SeenXid(uuid, index, None if instance == NO_INSTANCE else int(instance),
                                      int(data.eventData), self.clock()))
