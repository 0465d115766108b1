"""A scripted NVML for the NVML collector's tests: no GPU, no driver, no sys.modules patching.

`FakeNvml` is module-like: pynvml's function names, and pynvml's own error classes
and constants (importing pynvml needs no driver), over `FakeGpu`s. Tests change the
GPUs between scrapes (lose one, make a call fail, advance a counter) and queue XIDs
for the event set with `emit_xid`.
"""

from __future__ import annotations

import queue
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

GIB = 1024 ** 3
H100 = "NVIDIA H100 80GB HBM3"


@dataclass
class FakeMig:
    """One GPU instance (with one compute instance) of a MIG-enabled GPU."""

    gi: int
    profile: str                   # as NVML appends it to the name: "1g.10gb"
    used: int                      # bytes
    total: int
    processes: int = 0


@dataclass
class FakeGpu:
    uuid: str
    bus_id: str
    name: str = H100
    util: int = 0
    used: int = 0                  # bytes
    total: int = 80 * GIB
    power_mw: int = 70_000
    energy_mj: int = 0
    temp_c: int = 35
    mem_temp_c: int | None = 40    # None: the memory-temperature field answers NotSupported
    sm_clock: int = 1980
    mem_clock: int = 2619
    throttle: int = 0
    ecc: dict[tuple[int, int], int] | None = field(default_factory=dict)   # None: ECC disabled
    remapped: tuple[int, int, int, int] = (0, 0, 0, 0)   # correctable, uncorrectable, pending, failure
    processes: int = 0
    migs: list[FakeMig] = field(default_factory=list)
    lost: bool = False             # every call on it raises GpuIsLost
    handle_error: Exception | None = None      # raised by nvmlDeviceGetHandleByIndex
    failures: dict[str, Exception] = field(default_factory=dict)   # function name -> raised by it


class Handle:
    """A device handle: the GPU, or one of its MIG devices."""

    def __init__(self, gpu: FakeGpu, mig: FakeMig | None = None):
        self.gpu, self.mig = gpu, mig


class FakeNvml:
    """Module-like NVML double (see module docstring)."""

    def __init__(self, gpus: list[FakeGpu], driver: str = "550.90.07"):
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_", "nvmlEventType")):
                setattr(self, name, getattr(pynvml, name))
        self.gpus = gpus
        self.driver = driver
        self.init_error: Exception | None = None   # raised by nvmlInit while set
        self.calls: Counter[str] = Counter()
        self.registered: list[tuple[Handle, int]] = []
        self._handles: dict[tuple[int, int | None], Handle] = {}
        self._events: queue.Queue = queue.Queue()

    # ---- helpers ------------------------------------------------------------

    def _handle(self, gpu: FakeGpu, mig: FakeMig | None = None) -> Handle:
        key = (id(gpu), None if mig is None else mig.gi)
        return self._handles.setdefault(key, Handle(gpu, mig))       # NVML handles are stable

    def _use(self, fn: str, h: Handle, *, board: bool = False) -> FakeGpu:
        self.calls[fn] += 1
        gpu = h.gpu
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        if fn in gpu.failures:
            raise gpu.failures[fn]
        if board and h.mig is not None:
            raise pynvml.NVMLError_InvalidArgument()      # board-level reads need the parent's handle
        return gpu

    def queued_xids(self) -> int:
        return self._events.qsize()

    def emit_xid(self, gpu_index: int, xid: int, gi: int | None = None) -> None:
        """Queue an XID critical error for the event set, as the driver would report it."""
        gpu = self.gpus[gpu_index]
        self._events.put(SimpleNamespace(device=self._handle(gpu), eventType=pynvml.nvmlEventTypeXidCriticalError,
                                         eventData=xid, gpuInstanceId=pynvml.NVML_GPU_INSTANCE_ID_ANY if gi is None
                                         else gi, computeInstanceId=pynvml.NVML_COMPUTE_INSTANCE_ID_ANY))

    # ---- system ---------------------------------------------------------------

    def nvmlInit(self):
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls["nvmlShutdown"] += 1

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        gpu = self.gpus[index]
        self.calls["nvmlDeviceGetHandleByIndex"] += 1
        if gpu.handle_error is not None:
            raise gpu.handle_error
        return self._handle(gpu)

    # ---- identity ---------------------------------------------------------------

    def nvmlDeviceGetUUID(self, h):
        return self._use("nvmlDeviceGetUUID", h).uuid

    def nvmlDeviceGetName(self, h):
        gpu = self._use("nvmlDeviceGetName", h)
        return gpu.name if h.mig is None else f"{gpu.name} MIG {h.mig.profile}"

    def nvmlDeviceGetPciInfo_v3(self, h):
        return SimpleNamespace(busId=self._use("nvmlDeviceGetPciInfo_v3", h, board=True).bus_id.encode())

    # ---- board-level values -------------------------------------------------------

    def nvmlDeviceGetPowerUsage(self, h):
        return self._use("nvmlDeviceGetPowerUsage", h, board=True).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._use("nvmlDeviceGetTotalEnergyConsumption", h, board=True).energy_mj

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._use("nvmlDeviceGetTemperature", h, board=True).temp_c

    def nvmlDeviceGetFieldValues(self, h, field_ids):
        gpu = self._use("nvmlDeviceGetFieldValues", h, board=True)
        assert field_ids == [pynvml.NVML_FI_DEV_MEMORY_TEMP]
        supported = gpu.mem_temp_c is not None
        return [SimpleNamespace(fieldId=field_ids[0], valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
                                nvmlReturn=pynvml.NVML_SUCCESS if supported else pynvml.NVML_ERROR_NOT_SUPPORTED,
                                value=SimpleNamespace(uiVal=gpu.mem_temp_c or 0))]

    def nvmlDeviceGetClockInfo(self, h, clock):
        gpu = self._use("nvmlDeviceGetClockInfo", h, board=True)
        return {pynvml.NVML_CLOCK_SM: gpu.sm_clock, pynvml.NVML_CLOCK_MEM: gpu.mem_clock}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._use("nvmlDeviceGetCurrentClocksEventReasons", h, board=True).throttle

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        gpu = self._use("nvmlDeviceGetTotalEccErrors", h, board=True)
        if gpu.ecc is None:
            raise pynvml.NVMLError_NotSupported()
        return gpu.ecc.get((error_type, counter_type), 0)

    def nvmlDeviceGetRemappedRows(self, h):
        return self._use("nvmlDeviceGetRemappedRows", h, board=True).remapped

    def nvmlDeviceGetMigMode(self, h):
        gpu = self._use("nvmlDeviceGetMigMode", h, board=True)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.migs else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7 if self._use("nvmlDeviceGetMaxMigDeviceCount", h, board=True).migs else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, index):
        gpu = self._use("nvmlDeviceGetMigDeviceHandleByIndex", h, board=True)
        if index >= len(gpu.migs):
            raise pynvml.NVMLError_NotFound()
        return self._handle(gpu, gpu.migs[index])

    # ---- per device (GPU or MIG instance) ---------------------------------------------

    def nvmlDeviceGetGpuInstanceId(self, h):
        self._use("nvmlDeviceGetGpuInstanceId", h)
        if h.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return h.mig.gi

    def nvmlDeviceGetMemoryInfo(self, h):
        gpu = self._use("nvmlDeviceGetMemoryInfo", h)
        used, total = (gpu.used, gpu.total) if h.mig is None else (h.mig.used, h.mig.total)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, h):
        gpu = self._use("nvmlDeviceGetUtilizationRates", h)
        if h.mig is not None:
            raise pynvml.NVMLError_NotSupported()          # as on real MIG instances
        return SimpleNamespace(gpu=gpu.util, memory=0)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, h):
        gpu = self._use("nvmlDeviceGetComputeRunningProcesses_v3", h)
        n = gpu.processes if h.mig is None else h.mig.processes
        return [SimpleNamespace(pid=1000 + i, usedGpuMemory=GIB) for i in range(n)]

    # ---- events ---------------------------------------------------------------------------

    def nvmlEventSetCreate(self):
        self.calls["nvmlEventSetCreate"] += 1
        return object()

    def nvmlDeviceRegisterEvents(self, h, event_types, event_set):
        self._use("nvmlDeviceRegisterEvents", h)
        self.registered.append((h, event_types))

    def nvmlEventSetWait(self, event_set, timeout_ms):
        try:
            return self._events.get(timeout=timeout_ms / 1000) if timeout_ms else self._events.get_nowait()
        except queue.Empty:
            raise pynvml.NVMLError_Timeout() from None

    def nvmlEventSetFree(self, event_set):
        self.calls["nvmlEventSetFree"] += 1
