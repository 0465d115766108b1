"""The simulated floor: what every GPU and meter of the configured centre reads at any instant.

Everything is a pure function of (seed, host, GPU, time): each random choice hashes
its own key (splitmix64 over the seed, the host and a time block) instead of
drawing from a shared stream, so "what did node X print at t" can be asked for
any t, in any order, from any thread, and gives the same answer every time.

The floor, in layers:

- **Schedules.** Time is cut into weekly chunks (phase-shifted per gang of nodes,
  so chunk edges never line up across the floor). Training gangs (4 nodes) run
  jobs of 2-72 h with short or long gaps; a job may overhang into the next chunk,
  and that chunk then drops its own jobs that would start before the overhang
  ends. Inference nodes get a weekly pod layout with a daily redeploy. A node's
  chunk becomes a list of segments (idle / training job / inference epoch).
- **Power in closed form.** Within a segment the noise-free power of each GPU is
  a closed-form function (constant levels, periodic checkpoint dips, a sum of
  cosines for inference load), so its integral is closed-form too. Energy
  counters are prefix sums over segments plus one partial integral: exact,
  monotonic, and cheap for any t. Reported power adds small zero-mean noise.
- **Events.** XIDs (hourly slots), GPUs falling off the bus (daily slots: XID 79,
  then absent 20-90 min, then back with a reset energy counter), exporter outages
  (4-hour slots, 5-40 min, about one of 64 exporters down at a time), thermal
  throttling on a few hot GPUs per week, node driver reloads every 4 weeks.
- **Facility.** IT power = GPUs + per-node non-GPU load + shared IT (fabric,
  storage); cooling follows a Shanghai-like outdoor temperature (seasonal,
  diurnal, weather-scale swings) times the previous hour's mean IT load; facility
  = IT + UPS losses + cooling + the configured site overhead. Meter registers
  count from COMMISSIONED_AT, so they never reset; the first facility reading
  in a process sums the hours since then (vectorised and cached: ~0.5 s for a
  year of history), later ones only the new hours.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from simulator.exporter import DRIVER_VERSION, NodeRenderer, gpu_labels, render_amd, render_ascend, xid_message

if TYPE_CHECKING:
    import config

# ---------------------------------------------------------------- constants

DAY = 86400.0
HOUR = 3600.0
CHUNK_S = 7 * DAY                 # schedule chunk: one week
BOOT_CHUNKS = 4                   # node driver reload (energy counters reset) every 4 chunks
GANG_NODES = 4                    # training jobs run on gangs of this many nodes
INFER_EPOCH_S = DAY               # inference pods are redeployed daily
NOISE_S = 15.0                    # sample noise changes every scrape interval
BJT = 8 * HOUR                    # Beijing time offset from UTC

# Energy/facility registers start at the centre's commissioning (2026-01-01 00:00 Beijing).
COMMISSIONED_AT = datetime(2025, 12, 31, 16, 0, tzinfo=timezone.utc).timestamp()

# Demand (issue 16, docs/capacity.md): the floor's demand grows DEMAND_GROWTH a month to
# DEMAND_AT_REF at DEMAND_REF (and on, until every job runs): further back, a training job or an
# inference pod is left out with the missing share. The last training tenant ramps up from
# RAMP_FROM to RAMP_TO (its weight in the job draw from RAMP_LOW to RAMP_HIGH times its own), so
# the capacity forecasts have a true trend to find. Pure functions of time, as everything here.
DEMAND_REF = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
DEMAND_AT_REF = 0.88
DEMAND_GROWTH = 0.03
MONTH_S = 30.4375 * DAY
RAMP_FROM = datetime(2026, 7, 1, tzinfo=timezone.utc).timestamp()
RAMP_TO = datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
RAMP_LOW, RAMP_HIGH = 0.2, 2.5
INFER_HELD_AT_REF = 0.92          # share of inference pod slots deployed at DEMAND_REF


def demand_level(t: float) -> float:
    """The share of the floor's jobs and pods that run at t (1 once demand has grown to all)."""
    return min(1.0, DEMAND_AT_REF * (1.0 + DEMAND_GROWTH) ** ((t - DEMAND_REF) / MONTH_S))


def ramp_weight(t: float) -> float:
    """The ramping tenant's weight multiplier at t."""
    x = min(1.0, max(0.0, (t - RAMP_FROM) / (RAMP_TO - RAMP_FROM)))
    return RAMP_LOW + (RAMP_HIGH - RAMP_LOW) * x


# Event rates, tuned for the default centre (64 nodes): at a typical instant about one
# exporter is down, a handful of GPUs throttle, an XID or a lost GPU is often showing.
P_XID_PER_HOST_HOUR = 0.03
P_LOST_PER_HOST_DAY = 0.04
OUTAGE_SLOT_S = 4 * HOUR
P_OUTAGE_PER_SLOT = 0.17
P_HOT_GPU_PER_WEEK = 0.015
HOT_POWER_W = 380.0               # a hot GPU throttles only when it works this hard (H100 scale)

# Per-GPU power levels at 700 W TDP; scaled by the model's TDP from the catalogue.
P_IDLE = (62.0, 78.0)             # no process
P_INIT = 92.0                     # job starting: context up, data loading
P_DIP = 160.0                     # checkpoint write
P_HUNG = 118.0                    # stuck job: memory held, nothing running
P_RUN = (550.0, 690.0)            # training step
P_ALLOC = 86.0                    # inference pod loaded, no traffic
P_INFER_PEAK = 560.0              # inference pod at full load

# Node and site electrical model (watts).
NODE_BASE_W = 1500.0              # CPUs, NICs, fans of an idle 8-GPU node
NODE_K = 1000.0 / (8 * (P_RUN[1] - 60.0))   # non-GPU load rises with GPU load: ~1.5 -> ~2.5 kW
SHARED_IT_W_PER_GPU = 50.0        # fabric switches, storage, management on the UPS
UPS_FIXED_W = 5000.0
UPS_LOSS_FRAC = 0.025
COOL_BASE_W = 12000.0             # pumps and CRAH fans
COOL_FRAC_AT_20C = 0.17           # cooling kW per IT kW at 20 degrees C outdoor
COOL_FRAC_PER_C = 0.0075
COOL_BLOCK_S = HOUR               # cooling follows the previous hour's mean IT load

_M = 0xFFFFFFFFFFFFFFFF
_U16 = 1.0 / 65536.0
_U53 = 2.0 ** -53


# ---------------------------------------------------------------- hashing

def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M
    return z ^ (z >> 31)


def _hk(key: int, *xs: int) -> int:
    z = key
    for x in xs:
        z = _mix(z ^ (x & _M))
    return z


def _skey(*parts: object) -> int:
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _u(z: int, i: int = 0) -> float:
    """The i-th (0..3) 16-bit uniform in [0, 1) packed in a 64-bit hash."""
    return ((z >> (16 * i)) & 0xFFFF) * _U16


def _uf(z: int) -> float:
    """A 53-bit uniform in [0, 1), for event times."""
    return (z >> 11) * _U53


_TAG_JOB, _TAG_GPU, _TAG_INF, _TAG_XID, _TAG_LOST, _TAG_OUT, _TAG_HOT, _TAG_RESET, _TAG_BOOT = range(101, 110)


# ---------------------------------------------------------------- public types

class ExporterDown(Exception):
    """The node's exporter is in an outage at the asked time.

    `mode` says how it fails on the wire ("hang" or "503"); `until` is when it
    answers again (epoch seconds).
    """

    def __init__(self, host: str, t: float, mode: str = "503", until: float | None = None):
        super().__init__(f"exporter on {host} is not answering at {t:.0f}")
        self.host = host
        self.mode = mode
        self.until = until


@dataclass
class GpuState:
    """One GPU (or MIG instance) at one instant, in dcgm-exporter's terms and units."""

    host: str
    gpu_index: int
    uuid: str
    pci_bus_id: str
    model_name: str
    util_pct: float
    gr_active: float
    sm_active: float
    tensor_active: float
    dram_active: float
    fb_used_mib: float
    fb_free_mib: float
    power_w: float
    energy_mj: int
    gpu_temp_c: float
    mem_temp_c: float
    sm_clock_mhz: float
    mem_clock_mhz: float
    throttle_reasons: int
    xid: int
    namespace: str | None
    pod: str | None
    container: str | None
    mig_profile: str | None = None
    mig_instance: int | None = None
    pcie_replay: int = 0
    mem_copy_util: float = 0.0
    enc_util: float = 0.0
    dec_util: float = 0.0
    nvlink_total: int = 0
    remapped_rows_uncorrectable: int = 0
    remapped_rows_correctable: int = 0
    row_remap_failure: int = 0
    ecc_dbe_vol: int = 0
    pcie_tx_bytes: int = 0
    pcie_rx_bytes: int = 0


# Field order of a row in the fast path; matches exporter.METRICS.
_ROW_ATTRS = ("sm_clock_mhz", "mem_clock_mhz", "mem_temp_c", "gpu_temp_c", "power_w", "energy_mj", "pcie_replay",
              "util_pct", "mem_copy_util", "enc_util", "dec_util", "xid", "fb_free_mib", "fb_used_mib",
              "nvlink_total", "remapped_rows_uncorrectable", "remapped_rows_correctable", "row_remap_failure",
              "throttle_reasons", "ecc_dbe_vol", "gr_active", "sm_active", "tensor_active", "dram_active",
              "pcie_tx_bytes", "pcie_rx_bytes")


@dataclass(frozen=True)
class HostInfo:
    host: str
    cluster: str
    site: str
    n_gpus: int
    kind: str = "dcgm"          # the exporter it serves: dcgm, amd or ascend (by the model's vendor)


# catalogue vendor -> the exporter a node of that vendor serves
EXPORTER_OF_VENDOR = {"amd": "amd", "huawei": "ascend"}


# ---------------------------------------------------------------- internal structures

_PCI_SLOTS = ("1B", "43", "52", "61", "9D", "C3", "D1", "DF")   # an HGX H100 board's bus numbers

_TRAIN_JOBS = ("llm-pretrain-70b", "llm-sft-13b", "moe-pretrain", "rlhf-ppo", "vit-huge", "bev-perception",
               "occupancy-net", "protein-fold", "dock-diffusion", "asr-conformer", "code-llm-34b", "dpo-align")
_INFER_DEPLOYS = ("qwen2-72b-chat", "llama3-8b-instruct", "embedding-bge", "rerank-m3", "tutor-14b",
                  "vision-ocr", "glm4-9b-chat", "whisper-large")

_XID_CODES = ((13, 0.22), (31, 0.20), (43, 0.14), (48, 0.03), (63, 0.10), (64, 0.02), (74, 0.12), (94, 0.12),
              (95, 0.05))
_DBE_XIDS = frozenset((48, 94, 95))
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"

THERMAL_SW = 0x20
THERMAL_HW = 0x40 | 0x08
POWER_CAP = 0x04
GPU_IDLE = 0x01


def _suffix(z: int, n: int) -> str:
    out = []
    for _ in range(n):
        z, r = divmod(z, len(_ALNUM))
        out.append(_ALNUM[r])
    return "".join(out)


def _pick_xid(u: float) -> int:
    acc = 0.0
    for code, w in _XID_CODES:
        acc += w
        if u < acc:
            return code
    return _XID_CODES[-1][0]


class _Curve:
    """Inference load: c0 + sum A*cos(w*t + phi), with its exact integral."""

    __slots__ = ("c0", "terms", "_prim")

    def __init__(self, c0: float, terms: list[tuple[float, float, float]]):
        self.c0 = c0
        self.terms = terms
        self._prim: dict[float, float] = {}

    def prim(self, t: float) -> float:
        """An antiderivative, memoised: the facility walks every host over the same hour boundaries."""
        v = self._prim.get(t)
        if v is None:
            v = self.c0 * (t - COMMISSIONED_AT)
            for amp, w, p in self.terms:
                v += amp / w * math.sin(w * t + p)
            if len(self._prim) > 200000:
                self._prim = {}
            self._prim[t] = v
        return v

    def at(self, t: float) -> float:
        v = self.c0
        for a, w, p in self.terms:
            v += a * math.cos(w * t + p)
        return v

    def integral(self, a: float, b: float) -> float:
        v = self.c0 * (b - a)
        for amp, w, p in self.terms:
            v += amp / w * (math.sin(w * b + p) - math.sin(w * a + p))
        return v


def _daily_curve(peak_hour_bjt: float, c0: float, a1: float, a2: float, weekly: float, week_phase: float) -> _Curve:
    w1 = 2 * math.pi / DAY
    # cos(w1*(t - t_peak)) peaks when t (UTC seconds) is at peak_hour Beijing time
    t_peak = (peak_hour_bjt * HOUR - BJT) % DAY
    p1 = -w1 * t_peak
    return _Curve(c0, [(a1, w1, p1), (a2, 2 * w1, 2 * p1), (weekly, w1 / 7, week_phase)])


class _Job:
    __slots__ = ("start", "end", "init_end", "hang_at", "period", "dip", "ns", "slug", "key", "tenant")

    def __init__(self, start, end, init_end, hang_at, period, dip, ns, slug, key, tenant):
        self.start = start
        self.end = end
        self.init_end = init_end
        self.hang_at = hang_at
        self.period = period
        self.dip = dip
        self.ns = ns
        self.slug = slug
        self.key = key
        self.tenant = tenant


class _Pod:
    """An inference pod; its name is built on first use (most pods of history are never rendered)."""

    __slots__ = ("ns", "_name", "_parts", "container", "scale", "fb", "curve")

    def __init__(self, ns, parts, container, scale, fb, curve):
        self.ns = ns
        self._name = None
        self._parts = parts
        self.container = container
        self.scale = scale
        self.fb = fb
        self.curve = curve

    @property
    def name(self) -> str:
        if self._name is None:
            deploy, rs_key, pod_key = self._parts
            self._name = f"{deploy}-predictor-{_suffix(rs_key, 10)}-{_suffix(pod_key, 5)}"
        return self._name


IDLE, TRAIN, INFER = 0, 1, 2


class _Seg:
    """A stretch of one node's time with one allocation.

    Node-level sums (`nconst`, `nrun`, `nweights`) are set when the segment is
    built, because the facility meters need only node totals over months of
    history. Per-GPU levels of a TRAIN segment (p_run, util, sm, ten, dram, fb)
    are filled on first use by Floor._detail: only rendered nodes need them.
    INFER: `pods[g]` is the _Pod holding GPU g, or None.
    """

    __slots__ = ("start", "end", "kind", "job", "pod", "pods", "nconst", "nrun", "nweights", "p_run", "util", "sm",
                 "ten", "dram", "fb")
    util: list
    sm: list
    ten: list
    dram: list
    fb: list

    def __init__(self, start, end, kind):
        self.start = start
        self.end = end
        self.kind = kind
        self.job = None
        self.pod = None
        self.pods = None
        self.nconst = 0.0
        self.nrun = 0.0
        self.nweights = ()
        self.p_run = None


def _dip_time(x: float, period: float, dip: float) -> float:
    """Checkpoint seconds within the first x seconds of a job's training phase."""
    if x <= 0:
        return 0.0
    k = math.floor(x / period)
    r = x - k * period
    return k * dip + max(0.0, r - (period - dip))


def _train_pieces(j: _Job, a: float, b: float) -> tuple[float, float, float, float]:
    """Seconds of (init, hung, checkpoint dip, steady training) of job j within [a, b)."""
    init = max(0.0, min(b, j.init_end) - max(a, j.start))
    hung = max(0.0, min(b, j.end) - max(a, j.hang_at)) if j.hang_at < b else 0.0
    ra, rb = max(a, j.init_end), min(b, j.hang_at)
    if rb <= ra:
        return init, hung, 0.0, 0.0
    dip = _dip_time(rb - j.init_end, j.period, j.dip) - _dip_time(ra - j.init_end, j.period, j.dip)
    return init, hung, dip, rb - ra - dip


class _Chunk:
    """One node's segments for one schedule chunk, with energy prefix sums.

    ncum/ntotal: node GPU joules from the chunk start (always). gcum/gtotal: the
    same per GPU (lazily). t0cum: node GPU joules from COMMISSIONED_AT to the
    chunk start (lazily, for the facility registers).
    """

    __slots__ = ("starts", "segs", "ncum", "ntotal", "gcum", "gtotal", "epoch_base", "boot_t", "t0cum", "hot")

    def __init__(self, starts, segs, ncum, ntotal):
        self.starts = starts
        self.segs = segs
        self.ncum = ncum
        self.ntotal = ntotal
        self.gcum = None
        self.gtotal = None
        self.epoch_base = None
        self.boot_t = None
        self.t0cum = None
        self.hot = None


class _Host:
    """One node's fixed traits (set once in Floor.__init__); slots only, many thousands exist."""

    __slots__ = ("info", "name", "key", "n", "model", "kind", "fb_total", "scale", "role", "gkey", "pos", "phase",
                 "boot_off", "site", "cluster", "uuid", "pci", "p_idle", "t_base", "mem_dt", "replay", "rr_c",
                 "rr_u", "rr_f", "gk", "labels", "idle_sum", "since")
    info: HostInfo
    name: str
    key: int
    n: int
    model: str
    kind: str
    fb_total: float
    scale: float
    role: str
    gkey: int
    pos: int
    phase: int
    boot_off: int
    site: str
    cluster: str
    uuid: list[str]
    pci: list[str]
    p_idle: list[float]
    t_base: list[float]
    mem_dt: list[int]
    replay: list[int]
    rr_c: list[int]
    rr_u: list[int]
    rr_f: list[int]
    gk: list[int]
    labels: dict
    idle_sum: float
    since: float                  # when the node arrived (its cluster's simulated arrival), else -inf


# ---------------------------------------------------------------- the floor

class Floor:
    """The configured centre, simulated: deterministic under `seed` for any instant.

    Thread-safe: caches are filled by compute-then-store (a race only repeats
    work), and the facility registers extend under a lock.
    """

    def __init__(self, cfg: "config.Config", seed: int | None = None):
        self.cfg = cfg
        self.seed = cfg.simulator.seed if seed is None else seed
        self._skey = _skey("floor", self.seed)
        self.hosts: list[HostInfo] = []
        self._hosts: dict[str, _Host] = {}
        self.sites: tuple[str, ...] = tuple(s.id for s in cfg.sites)
        self._site_hosts: dict[str, list[_Host]] = {s: [] for s in self.sites}
        self._train_tenants = [(t.id, t.namespaces[0] if t.namespaces else f"{t.id}-jobs")
                               for t in cfg.tenants if t.workload == "training"]
        self._infer_tenants = [(t.id, t.namespaces[0] if t.namespaces else f"{t.id}-serving")
                               for t in cfg.tenants if t.workload == "inference"]
        self._curves = {}
        for tid, _ in self._infer_tenants:
            z = _skey("curve", self.seed, tid)
            self._curves[tid] = _daily_curve(17.0 + 2.5 * _u(z, 0), 0.55, 0.34, -0.05, 0.04, 2 * math.pi * _u(z, 1))
        # clusters that arrive later (config/capacity.toml simulated_arrivals): absent before
        self._arrivals = {a.cluster: datetime(a.on.year, a.on.month, a.on.day, tzinfo=timezone.utc).timestamp() - BJT
                          for a in cfg.capacity.simulated_arrivals}
        self._build_hosts()
        self._group_cache: dict = {}
        self._chunk_cache: dict = {}
        self._xid_cache: dict = {}
        self._lost_cache: dict = {}
        self._ret_cache: dict = {}
        self._dbe_cache: dict = {}
        self._renderer = NodeRenderer(max_templates=256)
        self._fac_lock = threading.Lock()
        self._fac: dict[str, dict] = {}
        self._it_const_cache: dict[str, tuple[float, float]] = {}

    # ------------------------------------------------------------ layout

    def _role(self, cluster, idx: int) -> str:
        text = f"{cluster.id} {cluster.name}".lower()
        if "infer" in text or "serv" in text:
            role = "inference"
        elif "train" in text:
            role = "training"
        else:
            role = "training" if idx % 2 == 0 else "inference"
        if role == "inference" and not self._infer_tenants:
            role = "training"
        if role == "training" and not self._train_tenants and self._infer_tenants:
            role = "inference"
        return role

    def _build_hosts(self) -> None:
        cat = self.cfg.catalogue
        for ci, cl in enumerate(self.cfg.clusters):
            model = cat.lookup(cl.model)
            mem_gib = model.memory_gib if model else 80.0
            tdp = model.tdp_w if model else 700.0
            kind = EXPORTER_OF_VENDOR.get(model.vendor if model else "nvidia", "dcgm")
            if kind == "amd":
                fb_total = int(mem_gib * 1024) - 16          # amd-smi: an MI300X shows 196592 MB
            elif kind == "ascend":
                fb_total = int(mem_gib * 1024)               # npu-smi: a 910B shows 65536 MB
            else:
                fb_total = 81559 if mem_gib == 80 else int(mem_gib * 1024 * 0.9956)
            role = self._role(cl, ci)
            # an inference cluster lends its last gang to fine-tuning jobs when large enough
            train_from = 0 if role == "training" else (cl.nodes - GANG_NODES if cl.nodes >= 2 * GANG_NODES
                                                       and self._train_tenants else cl.nodes)
            for i in range(cl.nodes):
                name = f"{cl.host_prefix}-{i:03d}"
                h = _Host()
                h.name = name
                h.info = HostInfo(name, cl.id, cl.site, cl.gpus_per_node, kind)
                h.kind = kind
                h.key = _skey("host", self.seed, cl.id, name)
                h.n = cl.gpus_per_node
                h.model = cl.model
                h.fb_total = fb_total
                h.scale = tdp / 700.0
                h.cluster = cl.id
                h.site = cl.site
                if i >= train_from and self._train_tenants:
                    h.role = "training"
                    g = (i - train_from) // GANG_NODES
                    h.pos = (i - train_from) % GANG_NODES
                    h.gkey = _skey("gang", self.seed, cl.id, g)
                else:
                    h.role = "inference" if self._infer_tenants else "idle"
                    h.pos = 0
                    h.gkey = h.key
                h.phase = h.gkey % int(CHUNK_S)
                h.boot_off = _hk(h.key, _TAG_BOOT) % BOOT_CHUNKS
                h.gk = [_hk(h.key, _TAG_GPU, g) for g in range(h.n)]
                h.uuid, h.pci, h.p_idle, h.t_base, h.mem_dt = [], [], [], [], []
                h.replay, h.rr_c, h.rr_u, h.rr_f = [], [], [], []
                for g in range(h.n):
                    z = _skey("uuid", self.seed, name, g)
                    x = f"{z:016x}{_mix(z):016x}"
                    h.uuid.append(f"GPU-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:32]}")
                    slot = _PCI_SLOTS[g] if g < len(_PCI_SLOTS) else f"{(0x20 + 0x10 * g) % 256:02X}"
                    h.pci.append(f"00000000:{slot}:00.0")
                    s = h.gk[g]
                    h.p_idle.append((P_IDLE[0] + (P_IDLE[1] - P_IDLE[0]) * _u(s, 0)) * h.scale)
                    h.t_base.append(30.0 + 6.0 * _u(s, 1))
                    h.mem_dt.append(1 + int(3 * _u(s, 2)))
                    r = _mix(s)
                    h.replay.append(int(1 + 60 * _u(r, 1)) if _u(r, 0) < 0.03 else 0)
                    h.rr_c.append(int(1 + 4 * _u(r, 3)) if _u(r, 2) < 0.03 else 0)
                    r2 = _mix(r)
                    h.rr_u.append(1 if _u(r2, 0) < 0.004 else 0)
                    h.rr_f.append(1 if _u(r2, 1) < 0.0005 else 0)
                h.labels = {}
                h.idle_sum = sum(h.p_idle)
                h.since = self._arrivals.get(cl.id, -math.inf)
                self.hosts.append(h.info)
                self._hosts[name] = h
                self._site_hosts.setdefault(cl.site, []).append(h)

    def _host(self, host: str) -> _Host:
        try:
            return self._hosts[host]
        except KeyError:
            raise KeyError(f"unknown host {host!r}") from None

    # ------------------------------------------------------------ schedules

    def _chunk_of(self, h: _Host, t: float) -> int:
        return math.floor((t - h.phase) / CHUNK_S)

    def _chunk_start(self, h: _Host, c: int) -> float:
        return c * CHUNK_S + h.phase

    def _group_jobs(self, h: _Host, c: int) -> list[_Job]:
        """The raw job sequence a gang draws for chunk c (before overhang resolution)."""
        key = (h.gkey, c)
        jobs = self._group_cache.get(key)
        if jobs is not None:
            return jobs
        b0 = self._chunk_start(h, c)
        b1 = b0 + CHUNK_S
        zc = _hk(h.gkey, _TAG_JOB, c)
        cursor = b0 + 4 * HOUR * _u(zc, 0)
        jobs = []
        k = 0
        tenants = self._train_tenants
        base = [1.0 / (1 + 0.5 * i) for i in range(len(tenants))]
        while cursor < b1:
            z = _hk(zc, k)
            z2 = _mix(z)
            dur = 2 * HOUR * math.exp(math.log(36.0) * _u(z, 0))           # log-uniform 2..72 h
            weights = base[:-1] + [base[-1] * ramp_weight(cursor)] if len(base) > 1 else base
            wsum = sum(weights)
            pick = _u(z, 1) * wsum
            ti = 0
            while ti < len(tenants) - 1 and pick >= weights[ti]:
                pick -= weights[ti]
                ti += 1
            tid, ns = tenants[ti]
            init = (5 + 15 * _u(z, 2)) * 60
            hang_at = math.inf
            if _u(z, 3) < 0.08:
                hang_at = cursor + init + (0.4 + 0.5 * _u(z2, 0)) * (dur - init)
            period = (20 + 40 * _u(z2, 1)) * 60
            dip = 60 + 120 * _u(z2, 2)
            slug = _TRAIN_JOBS[(z2 >> 48) % len(_TRAIN_JOBS)]
            z3 = _mix(z2 ^ 0xA5)
            if _u(z3, 3) < demand_level(cursor) and cursor >= h.since:     # else the gang idles
                jobs.append(_Job(cursor, cursor + dur, cursor + init, hang_at, period, dip, ns,
                                 f"{slug}-{_suffix(_mix(z2), 5)}", _mix(z ^ 0x5A5A), tid))
            gap = (5 + 55 * _u(z3, 1)) * 60 if _u(z3, 0) < 0.75 else (2 + 18 * _u(z3, 2)) * HOUR
            cursor += dur + gap
            k += 1
        self._group_cache[key] = jobs
        return jobs

    def _train_seg(self, h: _Host, job: _Job, a: float, b: float) -> _Seg:
        s = _Seg(a, b, TRAIN)
        s.job = job
        s.pod = f"{job.ns}-{job.slug}-worker-{h.pos}"
        z = _hk(job.key, h.key)
        s.nrun = h.n * (P_RUN[0] + 25.0 + (P_RUN[1] - P_RUN[0] - 50.0) * _u(z, 0)) * h.scale
        return s

    def _detail(self, h: _Host, s: _Seg) -> None:
        """Per-GPU levels of a training segment; their p_run sums to the node's nrun."""
        if s.p_run is not None:
            return
        job = s.job
        mean = s.nrun / h.n
        devs, util, sm, ten, dram, fb = [], [], [], [], [], []
        for g in range(h.n):
            z = _hk(job.key, h.key, g)
            z2 = _mix(z)
            devs.append((_u(z, 0) - 0.5) * 50.0 * h.scale)
            util.append(90 + int(10 * _u(z, 1)))
            sm.append(0.62 + 0.26 * _u(z, 2))
            ten.append(0.32 + 0.26 * _u(z, 3))
            dram.append(0.30 + 0.28 * _u(z2, 0))
            fb.append(int(h.fb_total * (0.7535 + 0.2245 * _u(z2, 1))))
        off = sum(devs) / h.n
        s.util, s.sm, s.ten, s.dram, s.fb = util, sm, ten, dram, fb
        s.p_run = [mean + d - off for d in devs]

    def _infer_segs(self, h: _Host, c: int, b0: float) -> list[_Seg]:
        zc = _hk(h.key, _TAG_INF, c)
        n = h.n
        layouts = ([n], [n // 2, n - n // 2], [2] * (n // 2) + [n % 2], [1] * n,
                   [n // 2, n // 4, 1, n - n // 2 - n // 4 - 1])
        layout = [k for k in layouts[(zc >> 40) % len(layouts)] if k > 0]
        slots = []           # (first gpu, gpu count, tenant, namespace, deployment, scale, fb, unallocated, key)
        first = 0
        for j, size in enumerate(layout):
            z = _hk(zc, j)
            tid, ns = self._infer_tenants[(z >> 32) % len(self._infer_tenants)]
            deploy = _INFER_DEPLOYS[(z >> 44) % len(_INFER_DEPLOYS)]
            u = _u(z, 0)
            scale = 0.0 if u < 0.07 else 0.55 + 0.5 * _u(z, 1)
            free = _u(z, 2) >= INFER_HELD_AT_REF * demand_level(b0) / DEMAND_AT_REF
            fb = int(h.fb_total * (0.40 + 0.52 * _u(z, 3)))
            slots.append((first, size, tid, ns, deploy, scale, fb, free, z))
            first += size
        segs = []
        for e in range(int(CHUNK_S // INFER_EPOCH_S)):
            a = b0 + e * INFER_EPOCH_S
            seg = _Seg(a, a + INFER_EPOCH_S, INFER)
            pods: list[_Pod | None] = [None] * n
            for (g0, size, tid, ns, deploy, scale, fb, free, z) in slots:
                ze = _hk(z, c * 8 + e)
                if free or _u(ze, 0) < 0.05 or a < h.since:
                    continue
                parts = (deploy, _hk(z, c * 8 + e, 1), _mix(ze))
                held = _Pod(ns, parts, "triton-server", min(scale, 1.0), fb, self._curves[tid])
                for g in range(g0, g0 + size):
                    pods[g] = held
            seg.pods = pods
            sc = h.scale
            weights: dict = {}
            for g, pod in enumerate(pods):
                if pod is None:
                    seg.nconst += h.p_idle[g]
                else:
                    seg.nconst += P_ALLOC * sc
                    if pod.scale > 0.0:
                        weights[pod.curve] = weights.get(pod.curve, 0.0) + (P_INFER_PEAK - P_ALLOC) * pod.scale * sc
            seg.nweights = tuple(weights.items())
            segs.append(seg)
        return segs

    def _chunk(self, h: _Host, c: int) -> _Chunk:
        key = (h.name, c)
        ch = self._chunk_cache.get(key)
        if ch is not None:
            return ch
        b0 = self._chunk_start(h, c)
        b1 = b0 + CHUNK_S
        segs: list[_Seg] = []
        if h.role == "training":
            prev = self._group_jobs(h, c - 1)
            cursor = b0
            over_end = b0
            if prev and prev[-1].end > b0:
                job = prev[-1]
                over_end = job.end
                segs.append(self._train_seg(h, job, b0, min(job.end, b1)))
                cursor = min(job.end, b1)
            for job in self._group_jobs(h, c):
                if job.start < over_end:
                    continue
                if job.start > cursor:
                    segs.append(self._idle_seg(h, cursor, job.start))
                end = min(job.end, b1)
                segs.append(self._train_seg(h, job, job.start, end))
                cursor = end
            if cursor < b1:
                segs.append(self._idle_seg(h, cursor, b1))
        elif h.role == "inference":
            segs = self._infer_segs(h, c, b0)
        else:
            segs = [self._idle_seg(h, b0, b1)]
        ncum = []
        acc = 0.0
        for s in segs:
            ncum.append(acc)
            acc += self._node_seg_energy(h, s, s.start, s.end)
        ch = _Chunk([s.start for s in segs], segs, ncum, acc)
        if len(self._chunk_cache) > 50000:
            self._chunk_cache = {}
        self._chunk_cache[key] = ch
        return ch

    def _idle_seg(self, h: _Host, a: float, b: float) -> _Seg:
        s = _Seg(a, b, IDLE)
        s.nconst = h.idle_sum
        return s

    # ------------------------------------------------------------ power and energy (closed form)

    def _seg_energy(self, h: _Host, s: _Seg, a: float, b: float) -> list[float]:
        """Joules each GPU draws (noise-free) over [a, b) inside segment s."""
        dt = b - a
        if dt <= 0:
            return [0.0] * h.n
        if s.kind == IDLE:
            return [p * dt for p in h.p_idle]
        sc = h.scale
        if s.kind == TRAIN:
            self._detail(h, s)
            init, hung, dip, steady = _train_pieces(s.job, a, b)
            fixed = (P_INIT * init + P_HUNG * hung + P_DIP * dip) * sc
            return [fixed + p * steady for p in s.p_run]
        out = []
        ints: dict = {}
        for g, pod in enumerate(s.pods):
            if pod is None:
                out.append(h.p_idle[g] * dt)
            elif pod.scale == 0.0:
                out.append(P_ALLOC * sc * dt)
            else:
                li = ints.get(id(pod.curve))
                if li is None:
                    li = ints[id(pod.curve)] = pod.curve.integral(a, b)
                out.append((P_ALLOC * dt + (P_INFER_PEAK - P_ALLOC) * pod.scale * li) * sc)
        return out

    def _node_seg_energy(self, h: _Host, s: _Seg, a: float, b: float) -> float:
        """Joules of all the node's GPUs (noise-free) over [a, b) inside segment s; equals sum(_seg_energy)."""
        dt = b - a
        if dt <= 0:
            return 0.0
        if s.kind == TRAIN:
            init, hung, dip, steady = _train_pieces(s.job, a, b)
            return (P_INIT * init + P_HUNG * hung + P_DIP * dip) * h.scale * h.n + s.nrun * steady
        e = s.nconst * dt
        for curve, w in s.nweights:
            e += w * (curve.prim(b) - curve.prim(a))
        return e

    def _node_seg_power(self, h: _Host, s: _Seg, t: float) -> float:
        if s.kind == TRAIN:
            j = s.job
            if t < j.init_end:
                return P_INIT * h.scale * h.n
            if t >= j.hang_at:
                return P_HUNG * h.scale * h.n
            x = t - j.init_end
            if x - math.floor(x / j.period) * j.period >= j.period - j.dip:
                return P_DIP * h.scale * h.n
            return s.nrun
        p = s.nconst
        for curve, w in s.nweights:
            p += w * curve.at(t)
        return p

    def _locate(self, h: _Host, t: float) -> tuple[_Chunk, int, int]:
        c = self._chunk_of(h, t)
        ch = self._chunk(h, c)
        i = bisect.bisect_right(ch.starts, t) - 1
        return ch, c, max(i, 0)

    def _gpu_cum(self, h: _Host, ch: _Chunk) -> list[list[float]]:
        if ch.gcum is None:
            cum = []
            acc = [0.0] * h.n
            for s in ch.segs:
                cum.append(acc)
                acc = [x + y for x, y in zip(acc, self._seg_energy(h, s, s.start, s.end))]
            ch.gtotal = acc
            ch.gcum = cum
        return ch.gcum

    def _epoch(self, h: _Host, c: int, ch: _Chunk) -> tuple[list[float], float]:
        """Per-GPU joules from the node's last driver reload to the start of chunk c, and that reload's time."""
        if ch.epoch_base is None:
            cb = c - ((c + h.boot_off) % BOOT_CHUNKS)
            base = [0.0] * h.n
            for k in range(cb, c):
                prev = self._chunk(h, k)
                self._gpu_cum(h, prev)
                base = [x + y for x, y in zip(base, prev.gtotal)]
            ch.boot_t = self._chunk_start(h, cb)
            ch.epoch_base = base
        return ch.epoch_base, ch.boot_t

    def _potential(self, h: _Host, t: float) -> list[float]:
        """Per-GPU joules since the node's driver reload, at t."""
        ch, c, i = self._locate(h, t)
        base, _ = self._epoch(h, c, ch)
        seg = ch.segs[i]
        part = self._seg_energy(h, seg, seg.start, t)
        return [x + y + z for x, y, z in zip(base, self._gpu_cum(h, ch)[i], part)]

    def _t0cum(self, h: _Host, c: int) -> float:
        """Node GPU joules from COMMISSIONED_AT to the start of chunk c (negative before it)."""
        ch = self._chunk(h, c)
        if ch.t0cum is not None:
            return ch.t0cum
        c0 = self._chunk_of(h, COMMISSIONED_AT)
        if c <= c0:
            ch.t0cum = -self._node_energy_between(h, self._chunk_start(h, c), COMMISSIONED_AT)
            return ch.t0cum
        k = c - 1
        while k > c0 and self._chunk(h, k).t0cum is None:
            k -= 1
        acc = self._t0cum(h, k)
        for m in range(k, c):
            prev = self._chunk(h, m)
            prev.t0cum = acc
            acc += prev.ntotal
        ch.t0cum = acc
        return acc

    def _node_energy_between(self, h: _Host, a: float, b: float) -> float:
        total = 0.0
        t = a
        while t < b:
            ch, c, i = self._locate(h, t)
            seg = ch.segs[i]
            end = min(seg.end, b)
            total += self._node_seg_energy(h, seg, t, end)
            t = end
        return total

    def _node_since_t0(self, h: _Host, t: float) -> float:
        ch, c, i = self._locate(h, t)
        seg = ch.segs[i]
        return self._t0cum(h, c) + ch.ncum[i] + self._node_seg_energy(h, seg, seg.start, t)

    def _node_series(self, h: _Host, times: list[float]) -> list[float]:
        """_node_since_t0 at each of the ascending `times` (>= COMMISSIONED_AT), vectorised over times.

        The same closed forms as _node_seg_energy, evaluated with numpy on the
        segment each time falls in: months of hourly points cost milliseconds.
        """
        tt = np.asarray(times, dtype=float)
        c_first, c_last = self._chunk_of(h, times[0]), self._chunk_of(h, times[-1])
        base = self._t0cum(h, c_first)
        segs: list = []
        seg_base: list = []
        for c in range(c_first, c_last + 1):
            ch = self._chunk(h, c)
            if ch.t0cum is None:
                ch.t0cum = base
            segs.extend(ch.segs)
            seg_base.extend(base + x for x in ch.ncum)
            base += ch.ntotal
        m = len(segs)
        starts = np.fromiter((s.start for s in segs), float, m)
        idx = np.searchsorted(starts, tt, side="right") - 1
        a = starts[idx]
        out = np.asarray(seg_base)[idx]
        kind = np.fromiter((s.kind for s in segs), np.int8, m)[idx]
        nconst = np.fromiter((s.nconst for s in segs), float, m)[idx]
        out = out + np.where(kind == TRAIN, 0.0, nconst * (tt - a))
        curves: dict = {}
        for k, s in enumerate(segs):
            for curve, w in s.nweights:
                curves.setdefault(curve, np.zeros(m))[k] = w
        for curve, wcol in curves.items():
            c0, terms = curve.c0, curve.terms

            def prim(x, c0=c0, terms=terms):
                v = c0 * (x - COMMISSIONED_AT)
                for amp, w, p in terms:
                    v = v + amp / w * np.sin(w * x + p)
                return v
            out = out + wcol[idx] * (prim(tt) - prim(a))
        is_train = kind == TRAIN
        if is_train.any():
            jobs = [s.job for s in segs]
            def col(attr, fill):
                return np.fromiter((getattr(j, attr) if j is not None else fill for j in jobs), float, m)[idx]
            j_start, init_end, j_end = col("start", 0.0), col("init_end", 0.0), col("end", 0.0)
            hang_at, period, dip = col("hang_at", np.inf), col("period", 1.0), col("dip", 0.0)
            nrun = np.fromiter((s.nrun for s in segs), float, m)[idx]
            init = np.maximum(0.0, np.minimum(tt, init_end) - np.maximum(a, j_start))
            with np.errstate(invalid="ignore"):
                hung = np.where(hang_at < tt, np.maximum(0.0, np.minimum(tt, j_end) - np.maximum(a, hang_at)), 0.0)
            ra, rb = np.maximum(a, init_end), np.minimum(tt, hang_at)

            def dip_time(x):
                x = np.maximum(x, 0.0)
                k = np.floor(x / period)
                r = x - k * period
                return k * dip + np.maximum(0.0, r - (period - dip))
            run = rb > ra
            d = np.where(run, dip_time(rb - init_end) - dip_time(ra - init_end), 0.0)
            steady = np.where(run, rb - ra - d, 0.0)
            e_train = (P_INIT * init + P_HUNG * hung + P_DIP * d) * h.scale * h.n + nrun * steady
            out = out + np.where(is_train, e_train, 0.0)
        return out.tolist()

    # ------------------------------------------------------------ events

    def _xid_events(self, h: _Host, day: int) -> list[tuple[float, float, int, int]]:
        """(start, visible until, gpu, code) of the node's XIDs in one UTC day."""
        key = (h.name, day)
        ev = self._xid_cache.get(key)
        if ev is None:
            ev = []
            for s in range(24):
                z = _hk(h.key, _TAG_XID, day * 24 + s)
                if _u(z, 0) < P_XID_PER_HOST_HOUR:
                    z2 = _mix(z)
                    t0 = day * DAY + s * HOUR + HOUR * _uf(z2)
                    ev.append((t0, t0 + 120 + 360 * _u(z, 1), (z >> 32) % h.n, _pick_xid(_u(z, 3))))
            self._xid_cache[key] = ev
        return ev

    def _lost_event(self, h: _Host, day: int):
        """(xid79 at, gone at, back at, gpu) if one of the node's GPUs falls off the bus that day."""
        key = (h.name, day)
        if key in self._lost_cache:
            return self._lost_cache[key]
        z = _hk(h.key, _TAG_LOST, day)
        ev = None
        if _u(z, 0) < P_LOST_PER_HOST_DAY:
            z2 = _mix(z)
            tx = day * DAY + DAY * _uf(z2)
            gone = tx + 60 + 180 * _u(z, 1)
            ev = (tx, gone, gone + (20 + 70 * _u(z, 2)) * 60, (z >> 48) % h.n)
        self._lost_cache[key] = ev
        return ev

    def _returns_before(self, h: _Host, day: int) -> dict[int, float]:
        """Latest time each GPU came back on the bus, among events that ended before `day` (30-day window)."""
        key = (h.name, day)
        r = self._ret_cache.get(key)
        if r is None:
            r = {}
            for d in range(day - 31, day):
                ev = self._lost_event(h, d)
                if ev and ev[2] < day * DAY:
                    r[ev[3]] = max(r.get(ev[3], 0.0), ev[2])
            self._ret_cache[key] = r
        return r

    def _outage_in_slot(self, h: _Host, slot: int):
        """(start, end, mode) of the exporter outage that starts in this 4-hour slot, or None."""
        z = _hk(h.key, _TAG_OUT, slot)
        if _u(z, 0) >= P_OUTAGE_PER_SLOT:
            return None
        start = slot * OUTAGE_SLOT_S + OUTAGE_SLOT_S * _uf(_mix(z))
        return start, start + (5 + 35 * _u(z, 1)) * 60, ("hang" if _u(z, 2) < 0.5 else "503")

    def _outage(self, h: _Host, t: float):
        """(start, end, mode) of the node exporter's outage covering t, or None."""
        slot = math.floor(t / OUTAGE_SLOT_S)
        if t < h.since:                                     # not arrived yet: nothing answers
            return (-math.inf, h.since, "503")
        for s in (slot, slot - 1):
            o = self._outage_in_slot(h, s)
            if o is not None and o[0] <= t < o[1]:
                return o
        return None

    def _dbe_events(self, h: _Host, first_day: int, day: int) -> list[tuple[float, int]]:
        """(time, gpu) of the node's double-bit ECC XIDs from first_day to day, inclusive."""
        key = (h.name, first_day, day)
        ev = self._dbe_cache.get(key)
        if ev is None:
            ev = [(e[0], e[2]) for d in range(first_day, day + 1) for e in self._xid_events(h, d)
                  if e[3] in _DBE_XIDS]
            if len(self._dbe_cache) > 100000:
                self._dbe_cache = {}
            self._dbe_cache[key] = ev
        return ev

    # ------------------------------------------------------------ per-node state

    def _node(self, h: _Host, t: float):
        """Rows (value tuples in exporter.METRICS order) and identity of the node's present GPUs at t.

        Returns (rows, ids) where ids[k] = (gpu, namespace, pod, container) for rows[k].
        """
        n = h.n
        sc = h.scale
        ch, c, i = self._locate(h, t)
        seg = ch.segs[i]
        base, boot_t = self._epoch(h, c, ch)
        cum = self._gpu_cum(h, ch)[i]
        part = self._seg_energy(h, seg, seg.start, t)
        kind = seg.kind
        day = math.floor(t / DAY)

        # bus state: GPUs gone, XID 79 showing, last return (energy counter reset)
        gone = None
        x79 = None
        returned = self._returns_before(h, day)
        for d in (day - 1, day):
            ev = self._lost_event(h, d)
            if ev is None:
                continue
            tx, tg, tb, g = ev
            if tg <= t < tb:
                gone = g
            elif tx <= t < tg:
                x79 = g
            elif tb <= t:
                if tb > returned.get(g, 0.0):
                    returned = dict(returned)
                    returned[g] = tb
        xids = {}
        for d in (day - 1, day):
            for (t0, t1, g, code) in self._xid_events(h, d):
                if t0 <= t < t1:
                    xids[g] = code
        if x79 is not None:
            xids[x79] = 79

        # phase of the node's allocation
        if kind == TRAIN:
            self._detail(h, seg)
            j = seg.job
            if t < j.init_end:
                phase = 1
            elif t >= j.hang_at:
                phase = 3
            else:
                x = t - j.init_end
                phase = 2 if (x - math.floor(x / j.period) * j.period) >= j.period - j.dip else 0
            pod_ns, pod_name = j.ns, seg.pod
        dbe_events = self._dbe_events(h, math.floor(boot_t / DAY), day)
        hot = ch.hot
        if hot is None:
            hot = ch.hot = [(87.0 + 5.0 * _u(z, 1), _u(z, 2) < 0.3) if _u(z, 0) < P_HOT_GPU_PER_WEEK else None
                            for z in (_hk(gk, _TAG_HOT, c) for gk in h.gk)]
        load: dict = {}
        q = math.floor(t / NOISE_S) & _M
        rows = []
        ids = []
        for g in range(n):
            if g == gone:
                continue
            gk = h.gk[g]
            zn = _mix(gk ^ q)
            u0 = (zn & 0xFFFF) * _U16
            u1 = ((zn >> 16) & 0xFFFF) * _U16
            u2 = ((zn >> 32) & 0xFFFF) * _U16
            u3 = (zn >> 48) * _U16
            ns = pod = container = None
            clock = 1980
            throttle = 0
            tx_b = int(20000 + 60000 * u3)
            if kind == IDLE or (kind == INFER and seg.pods[g] is None):
                p = h.p_idle[g]
                util = 0
                sm = ten = dram = gr = 0.0
                fb = 0
                power = p + (u3 - 0.5) * 3 * sc
                clock = 345
                throttle = GPU_IDLE
            elif kind == TRAIN:
                ns, pod, container = pod_ns, pod_name, "pytorch"
                fb = seg.fb[g]
                if phase == 0:
                    p = seg.p_run[g]
                    util = min(100, seg.util[g] - 3 + int(u0 * 7))
                    sm = seg.sm[g] + (u1 - 0.5) * 0.04
                    ten = seg.ten[g] + (u1 - 0.5) * 0.04
                    dram = seg.dram[g] + (u2 - 0.5) * 0.04
                    gr = min(0.99, sm + 0.05 + 0.05 * u2)
                    fb += int(64 * u2)
                    power = p + (u3 - 0.5) * 24 * sc
                    tx_b = int(3e8 + 9e8 * u3)
                    if p > 665 * sc:
                        throttle = POWER_CAP
                        clock = 1860 + int(90 * u0)
                elif phase == 2:
                    p = P_DIP * sc
                    util = int(11 * u0)
                    sm = 0.01 + 0.03 * u1
                    ten = 0.0
                    dram = 0.02 + 0.03 * u2
                    gr = sm + 0.01
                    power = p + (u3 - 0.5) * 20 * sc
                    tx_b = int(2e9 + 4e9 * u3)
                elif phase == 1:
                    p = P_INIT * sc
                    util = 0
                    sm = ten = dram = gr = 0.0
                    fb = 500 + int(3000 * u2)
                    power = p + (u3 - 0.5) * 6 * sc
                    tx_b = int(1e8 * u3)
                else:
                    p = P_HUNG * sc
                    util = 0
                    sm = ten = dram = gr = 0.0
                    power = p + (u3 - 0.5) * 6 * sc
            else:
                pd = seg.pods[g]
                ns, pod, container = pd.ns, pd.name, pd.container
                if pd.scale == 0.0:
                    p = P_ALLOC * sc
                    util = 0
                    sm = ten = dram = gr = 0.0
                    fb = pd.fb
                    power = p + (u3 - 0.5) * 4 * sc
                else:
                    lv = load.get(id(pd.curve))
                    if lv is None:
                        lv = load[id(pd.curve)] = pd.curve.at(t)
                    eff = pd.scale * lv
                    p = (P_ALLOC + (P_INFER_PEAK - P_ALLOC) * eff) * sc
                    util = max(0, min(100, int(100 * min(1.0, eff * 1.15) + (u0 - 0.5) * 8)))
                    sm = 0.04 + 0.6 * eff + (u1 - 0.5) * 0.03
                    ten = 0.02 + 0.38 * eff + (u1 - 0.5) * 0.02
                    dram = 0.08 + 0.55 * eff + (u2 - 0.5) * 0.03
                    gr = min(0.99, sm + 0.05)
                    fb = min(h.fb_total - 300, pd.fb + int(6000 * eff))
                    power = p + (u3 - 0.5) * 16 * sc
                    tx_b = int(5e7 + 4e8 * eff * u3)
            ps = power / sc
            temp = h.t_base[g] + 0.062 * ps + (u1 - 0.5)
            if hot[g] is not None and p > HOT_POWER_W * sc:
                temp = hot[g][0] + (u1 - 0.5) * 0.8
                if hot[g][1]:
                    throttle = THERMAL_HW
                    clock = 1150 + int(250 * u0)
                else:
                    throttle = THERMAL_SW
                    clock = 1350 + int(300 * u0)
            gpu_temp = int(temp + 0.5)
            mem_temp = gpu_temp + h.mem_dt[g] + int(ps * 0.007)

            # energy since the later of driver reload and the GPU's last return to the bus
            e = base[g] + cum[g] + part[g]
            rt = returned.get(g, 0.0)
            if rt > boot_t:
                e0 = self._potential(h, rt)[g]
                reset_t = rt
            else:
                e0 = 0.0
                reset_t = boot_t
            ej = e - e0
            e_init = 200000 + (_mix(gk ^ _TAG_RESET ^ int(reset_t)) & 0x7FFFF)
            energy_mj = e_init + int(ej * 1000.0)
            nvl = int(ej * (4.0e7 if kind == TRAIN else 2.0e6))
            dbe = 0
            for (te, ge) in dbe_events:
                if ge == g and reset_t <= te <= t:
                    dbe += 1
            rows.append((clock, 2619, mem_temp, gpu_temp, round(power, 3), energy_mj, h.replay[g], util,
                         int(dram * 100), 0, 0, xids.get(g, 0) if xids else 0, h.fb_total - fb, fb, nvl, h.rr_u[g],
                         h.rr_c[g], h.rr_f[g], throttle, dbe, gr, sm, ten, dram, tx_b, int(tx_b * (0.6 + 0.3 * u2))))
            ids.append((g, ns, pod, container))
        return rows, ids

    # ------------------------------------------------------------ public API

    def gpu_states(self, host: str, t: float) -> list[GpuState]:
        """The host's GPUs at t; a GPU that has fallen off the bus is absent."""
        h = self._host(host)
        rows, ids = self._node(h, t)
        out = []
        for row, (g, ns, pod, container) in zip(rows, ids):
            kw = dict(zip(_ROW_ATTRS, row))
            out.append(GpuState(host=h.name, gpu_index=g, uuid=h.uuid[g], pci_bus_id=h.pci[g], model_name=h.model,
                                namespace=ns, pod=pod, container=container, **kw))
        return out

    def exporter_up(self, host: str, t: float) -> bool:
        return self._outage(self._host(host), t) is None

    def outage(self, host: str, t: float) -> tuple[float, float, str] | None:
        """(start, end, mode) of the exporter outage at t, or None; mode is "hang" or "503"."""
        return self._outage(self._host(host), t)

    def node_text(self, host: str, t: float) -> str:
        """The host's exporter text at t; raises ExporterDown during an outage.

        dcgm-exporter text, or for an AMD or Ascend cluster (by the catalogue
        vendor of its model) that vendor's exporter text of the same values.
        """
        h = self._host(host)
        out = self._outage(h, t)
        if out is not None:
            raise ExporterDown(host, t, mode=out[2], until=out[1])
        if h.kind != "dcgm":
            states = self.gpu_states(host, t)
            if h.kind == "amd":
                return render_amd(states)
            return render_ascend(states, timestamp_ms=int(t * 1000))
        rows, ids = self._node(h, t)
        key = (h.name, tuple(ids))
        labels = h.labels
        labs = []
        for (g, ns, pod, container) in ids:
            lk = (g, pod)
            lab = labels.get(lk)
            if lab is None:
                if len(labels) > 4096:
                    h.labels = labels = {}
                lab = labels[lk] = gpu_labels(g, h.uuid[g], h.pci[g], h.model, h.name, driver_version=DRIVER_VERSION,
                                              container=container, namespace=ns, pod=pod)
            labs.append(lab)
        return self._renderer.render(key, labs, rows)

    def driver_reload_at(self, host: str, t: float) -> float:
        """When the node's driver last loaded before t (its GPUs' energy counters restarted then)."""
        h = self._host(host)
        ch, c, _ = self._locate(h, t)
        return self._epoch(h, c, ch)[1]

    def events(self, start: float, end: float) -> list[dict]:
        """Scheduled XIDs, lost GPUs and exporter outages that begin in [start, end), in time order.

        Each: {"kind", "host", "gpu_index", "start", "end", "detail"}; for "lost",
        "start" is the XID 79, "gone" when the GPU leaves the bus, "end" when it is back.
        """
        out = []
        for h in self._hosts.values():
            for d in range(math.floor(start / DAY), math.floor(end / DAY) + 1):
                for (t0, t1, g, code) in self._xid_events(h, d):
                    if start <= t0 < end:
                        out.append({"kind": "xid", "host": h.name, "gpu_index": g, "start": t0, "end": t1,
                                    "detail": f"XID {code}: {xid_message(code)}", "code": code})
                ev = self._lost_event(h, d)
                if ev and start <= ev[0] < end:
                    out.append({"kind": "lost", "host": h.name, "gpu_index": ev[3], "start": ev[0], "gone": ev[1],
                                "end": ev[2], "detail": "GPU has fallen off the bus", "code": 79})
            for slot in range(math.floor(start / OUTAGE_SLOT_S), math.floor(end / OUTAGE_SLOT_S) + 1):
                o = self._outage_in_slot(h, slot)
                if o is not None and start <= o[0] < end:
                    out.append({"kind": "exporter_down", "host": h.name, "gpu_index": None, "start": o[0],
                                "end": o[1], "detail": f"exporter fails with {o[2]}", "mode": o[2]})
        out.sort(key=lambda e: (e["start"], e["host"]))
        return out

    def incidents(self, t: float) -> list[dict]:
        """What is wrong on the floor at t: XIDs showing, thermal throttling, lost GPUs, exporters down."""
        out = []
        for h in self._hosts.values():
            o = self._outage(h, t)
            if o is not None:
                out.append({"kind": "exporter_down", "host": h.name, "gpu_index": None,
                            "detail": f"exporter not answering ({o[2]}) until {_iso(o[1])}"})
            day = math.floor(t / DAY)
            for d in (day - 1, day):
                ev = self._lost_event(h, d)
                if ev and ev[1] <= t < ev[2]:
                    out.append({"kind": "lost", "host": h.name, "gpu_index": ev[3],
                                "detail": f"GPU has fallen off the bus; back at {_iso(ev[2])}"})
            rows, ids = self._node(h, t)
            for row, idt in zip(rows, ids):
                xid = row[11]
                if xid:
                    out.append({"kind": "xid", "host": h.name, "gpu_index": idt[0],
                                "detail": f"XID {xid}: {xid_message(xid)}"})
                thr = row[18]
                if thr & (THERMAL_SW | THERMAL_HW):
                    out.append({"kind": "thermal", "host": h.name, "gpu_index": idt[0],
                                "detail": f"{row[3]} °C, throttle reasons 0x{thr:x}, SM clock {row[0]} MHz"})
        return out

    # ------------------------------------------------------------ facility

    def outdoor_temp_c(self, t: float) -> float:
        """Shanghai-like dry bulb: seasonal (peak late July), diurnal (peak 14:00), weather swings."""
        return _outdoor(t, self._skey)

    def _cool_frac(self, t: float) -> float:
        return COOL_FRAC_AT_20C + COOL_FRAC_PER_C * (self.outdoor_temp_c(t) - 20.0)

    def _cool_frac_integral(self, a: float, b: float) -> float:
        return (COOL_FRAC_AT_20C - 20.0 * COOL_FRAC_PER_C) * (b - a) + COOL_FRAC_PER_C * _outdoor_integral(
            a, b, self._skey)

    def _it_consts(self, site: str) -> tuple[float, float]:
        """IT power = const + mult * (sum of GPU power) for the site."""
        got = self._it_const_cache.get(site)
        if got is not None:
            return got
        const = 0.0
        for h in self._site_hosts[site]:
            const += NODE_BASE_W * h.n / 8 * h.scale - NODE_K * h.n * 60.0 * h.scale + SHARED_IT_W_PER_GPU * h.n
        self._it_const_cache[site] = (const, 1.0 + NODE_K)
        return const, 1.0 + NODE_K

    def _site_gpu_power(self, site: str, t: float) -> float:
        total = 0.0
        for h in self._site_hosts[site]:
            ch, c, i = self._locate(h, t)
            total += self._node_seg_power(h, ch.segs[i], t)
        return total

    def _fac_state(self, site: str) -> dict:
        st = self._fac.get(site)
        if st is None:
            st = self._fac[site] = {"gpu_e": [], "cool_e": [0.0]}
        return st

    def _site_gpu_energy(self, site: str, k: int) -> float:
        """Noise-free GPU joules of the site from COMMISSIONED_AT to hour boundary k (cached, extends lazily)."""
        ge = self._fac_state(site)["gpu_e"]
        if len(ge) <= k:
            times = [COMMISSIONED_AT + m * COOL_BLOCK_S for m in range(len(ge), k + 1)]
            sums = [0.0] * len(times)
            for h in self._site_hosts[site]:
                sums = [x + y for x, y in zip(sums, self._node_series(h, times))]
            ge.extend(sums)
        return ge[k]

    def _site_cool_energy(self, site: str, k: int) -> float:
        """Cooling joules from COMMISSIONED_AT to hour boundary k (cached, extends lazily)."""
        ce = self._fac_state(site)["cool_e"]
        if len(ce) <= k:
            self._site_gpu_energy(site, k)
            while len(ce) <= k:
                j = len(ce) - 1
                a = COMMISSIONED_AT + j * COOL_BLOCK_S
                ce.append(ce[-1] + self._cool_energy(site, j, a, a + COOL_BLOCK_S))
        return ce[k]

    def _it_ref(self, site: str, j: int) -> float:
        """Mean IT power over the hour before block j starts: the cooling plant's lagged load."""
        const, mult = self._it_consts(site)
        if j <= 0:
            return const + mult * self._site_gpu_power(site, COMMISSIONED_AT + j * COOL_BLOCK_S)
        e = self._site_gpu_energy(site, j) - self._site_gpu_energy(site, j - 1)
        return const + mult * e / COOL_BLOCK_S

    def _cool_energy(self, site: str, j: int, a: float, b: float) -> float:
        return COOL_BASE_W * (b - a) + self._it_ref(site, j) * self._cool_frac_integral(a, b)

    def _meter_plan(self, site: str) -> list[tuple[str, str, int | None, str, tuple[str, ...]]]:
        """The site's meters as (meter, scope, category, what, host names): energy.toml's meters
        of kinds the floor can read (the intake, the UPS output, PDU outputs per hall or in all,
        the cooling plant, cooling loops per hall), else the classic three."""
        plan = self._meter_plans.get(site) if hasattr(self, "_meter_plans") else None
        if plan is not None:
            return plan
        energy = getattr(self.cfg, "energy", None)
        halls = {h.id: tuple(x.name for x in self._site_hosts[site] if x.cluster in h.clusters)
                 for h in (energy.halls if energy is not None else ()) if h.site == site}
        plan = []
        for m in (energy.meters if energy is not None else ()):
            if m.site != site:
                continue
            hosts = halls.get(m.hall, ()) if m.hall else ()
            if m.scope == "facility" and m.hall is None:
                plan.append((m.meter, "facility", None, "facility", ()))
            elif m.scope == "it" and m.category == 1 and m.hall is None:
                plan.append((m.meter, "it", 1, "ups", ()))
            elif m.scope == "it" and m.category == 2:
                every = tuple(h.name for h in self._site_hosts[site])
                plan.append((m.meter, "it", 2, "pdu", hosts if m.hall else every))
            elif m.scope == "cooling" and m.loop is None and m.hall is None:
                plan.append((m.meter, "cooling", None, "cooling", ()))
            elif m.scope == "cooling" and m.hall is not None:
                plan.append((m.meter, "cooling", None, "loop", hosts))
        if not plan:
            plan = [("facility-main", "facility", None, "facility", ()), ("ups-output", "it", 1, "ups", ()),
                    ("cooling-plant", "cooling", None, "cooling", ())]
        if not hasattr(self, "_meter_plans"):
            self._meter_plans: dict[str, list] = {}
        self._meter_plans[site] = plan
        return plan

    def _host_it_const(self, h: _Host) -> float:
        return NODE_BASE_W * h.n / 8 * h.scale - NODE_K * h.n * 60.0 * h.scale + SHARED_IT_W_PER_GPU * h.n

    def facility_values(self, site_id: str, t: float) -> dict:
        """Meter readings at t: powers (W), registers (kWh), outdoor temperature; noise-free.
        `meters`: each meter of `_meter_plan` as (meter, scope, category, power W, register kWh
        or None: a cooling loop reports power only). A PDU output is its hall's servers and
        shared IT less PDU_LOSS_FRAC; a loop carries the plant's cooling in proportion to its
        hall's IT power."""
        if site_id not in self._site_hosts:
            raise KeyError(f"unknown site {site_id!r}")
        const, mult = self._it_consts(site_id)
        hosts = self._site_hosts[site_id]
        gpu_w = {}
        for h in hosts:
            ch, c, i = self._locate(h, t)
            gpu_w[h.name] = self._node_seg_power(h, ch.segs[i], t)
        it_w = const + mult * sum(gpu_w.values())
        j = math.floor((t - COMMISSIONED_AT) / COOL_BLOCK_S)
        with self._fac_lock:
            cool_w = COOL_BASE_W + self._it_ref(site_id, j) * self._cool_frac(t)
        overhead_w = self.cfg.simulator.site_overhead_kw * 1000.0
        ups_w = UPS_FIXED_W + UPS_LOSS_FRAC * it_w
        fac_w = it_w + ups_w + cool_w + overhead_w
        gpu_j: dict[str, float] = {}
        if t <= COMMISSIONED_AT:
            e_it = e_cool = e_fac = 0.0
            dt = 0.0
        else:
            with self._fac_lock:
                a = COMMISSIONED_AT + j * COOL_BLOCK_S
                gpu_j = {h.name: self._node_since_t0(h, t) for h in hosts}
                cool_j = self._site_cool_energy(site_id, j) + self._cool_energy(site_id, j, a, t)
            dt = t - COMMISSIONED_AT
            it_j = const * dt + mult * sum(gpu_j.values())
            fac_j = it_j + UPS_FIXED_W * dt + UPS_LOSS_FRAC * it_j + cool_j + overhead_w * dt
            e_it, e_cool, e_fac = it_j / 3.6e6, cool_j / 3.6e6, fac_j / 3.6e6

        def part(names: tuple[str, ...]) -> tuple[float, float]:
            """IT power (W) and energy since commissioning (kWh) of these hosts' servers."""
            hs = [self._hosts[n] for n in names]
            c = sum(self._host_it_const(h) for h in hs)
            w = c + mult * sum(gpu_w[h.name] for h in hs)
            e = (c * dt + mult * sum(gpu_j.get(h.name, 0.0) for h in hs)) / 3.6e6
            return w, e

        meters: list[tuple[str, str, int | None, float, float | None]] = []
        for name, scope, cat, what, names in self._meter_plan(site_id):
            if what == "facility":
                meters.append((name, scope, cat, fac_w, e_fac))
            elif what == "ups":
                meters.append((name, scope, cat, it_w, e_it))
            elif what == "cooling":
                meters.append((name, scope, cat, cool_w, e_cool))
            elif what == "pdu":
                w, e = part(names)
                meters.append((name, scope, cat, w * (1 - PDU_LOSS_FRAC), e * (1 - PDU_LOSS_FRAC)))
            elif what == "loop":
                w, _ = part(names)
                meters.append((name, scope, cat, cool_w * w / it_w if it_w else 0.0, None))
        return {"site": site_id, "facility_w": fac_w, "it_w": it_w, "cooling_w": cool_w, "ups_loss_w": ups_w,
                "overhead_w": overhead_w, "outdoor_c": self.outdoor_temp_c(t),
                "energy_kwh": {"facility": e_fac, "it": e_it, "cooling": e_cool}, "meters": meters}

    def facility_text(self, site_id: str, t: float) -> str:
        """The site's meters at t as DCIM exposition text (power readings carry +-0.2 % meter noise)."""
        from simulator.exporter import render_facility_meters

        v = self.facility_values(site_id, t)
        z = _hk(_skey("meter", self.seed, site_id), math.floor(t / NOISE_S))
        meters = [(name, scope, cat, w * (1.0 + (_u(z, i) - 0.5) * 0.004), e)
                  for i, (name, scope, cat, w, e) in enumerate(v["meters"])]
        return render_facility_meters(site_id, meters, outdoor_temp_c=v["outdoor_c"])


# PDU and distribution transformer losses between the UPS output (category 1) and the PDU
# outputs (category 2)
PDU_LOSS_FRAC = 0.012


# ---------------------------------------------------------------- weather

_YEAR = 365.25 * DAY


def _outdoor_terms(key: int) -> list[tuple[float, float, float]]:
    """(amplitude, angular frequency, phase) of the outdoor temperature's cosine terms."""
    t_jul = datetime(2026, 7, 28, tzinfo=timezone.utc).timestamp()
    t_14 = 14 * HOUR - BJT
    w_y, w_d = 2 * math.pi / _YEAR, 2 * math.pi / DAY
    return [(11.5, w_y, -w_y * t_jul), (3.5, w_d, -w_d * t_14),
            (1.6, 2 * math.pi / (5.3 * DAY), 2 * math.pi * _u(key, 0)),
            (1.0, 2 * math.pi / (11.7 * DAY), 2 * math.pi * _u(key, 1))]


_OUTDOOR_MEAN = 17.0
_terms_cache: dict[int, list] = {}


def _outdoor(t: float, key: int) -> float:
    terms = _terms_cache.get(key) or _terms_cache.setdefault(key, _outdoor_terms(key))
    return _OUTDOOR_MEAN + sum(a * math.cos(w * t + p) for a, w, p in terms)


def _outdoor_integral(a: float, b: float, key: int) -> float:
    terms = _terms_cache.get(key) or _terms_cache.setdefault(key, _outdoor_terms(key))
    return _OUTDOOR_MEAN * (b - a) + sum(amp / w * (math.sin(w * b + p) - math.sin(w * a + p))
                                         for amp, w, p in terms)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- synthetic scrapes

def synthetic_gpus(n: int, t: float, seed: int = 1, mig_fraction: float = 0.0) -> list[GpuState]:
    """n physical GPUs over ceil(n/8) hosts ("syn-00000"...) at t, with a realistic mix.

    About 55 % train (busy), 15 % serve inference, 5 % are allocated but idle and
    25 % are free. A `mig_fraction` of the GPUs are split into four MIG instances
    (3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb), so such a scrape has more rows than GPUs.
    For benchmarks of one huge scrape: no schedule, no events, only hashing.
    """
    out: list[GpuState] = []
    key = _skey("synthetic", seed)
    q = math.floor(t / NOISE_S)
    model = "NVIDIA H100 80GB HBM3"
    total = 81559
    up_s = max(t - 6 * DAY, 0.0)
    for i in range(n):
        hi, g = divmod(i, 8)
        host = f"syn-{hi:05d}"
        zs = _hk(key, i)
        zn = _hk(zs, q)
        u0, u1, u2, u3 = _u(zn, 0), _u(zn, 1), _u(zn, 2), _u(zn, 3)
        x = f"{zs:016x}{_mix(zs):016x}"
        uuid = f"GPU-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:32]}"
        pci = f"00000000:{_PCI_SLOTS[g]}:00.0"
        kind = _u(zs, 0)
        ns = pod = container = None
        throttle = 0
        clock = 1980
        if kind < 0.55:
            util = 90 + int(10 * u0)
            sm, ten, dram = 0.62 + 0.26 * u1, 0.32 + 0.26 * u1, 0.30 + 0.28 * u2
            fb = int(total * (0.74 + 0.21 * _u(zs, 1)))
            power = 550 + 140 * _u(zs, 2) + (u3 - 0.5) * 24
            ns, pod, container = "syn-train", f"syn-train-job{hi // 4:04d}-worker-{hi % 4}", "pytorch"
        elif kind < 0.70:
            eff = 0.2 + 0.7 * u0
            util = int(100 * min(1.0, eff * 1.15))
            sm, ten, dram = 0.04 + 0.6 * eff, 0.02 + 0.38 * eff, 0.08 + 0.55 * eff
            fb = int(total * (0.40 + 0.52 * _u(zs, 1)))
            power = P_ALLOC + (P_INFER_PEAK - P_ALLOC) * eff
            ns, pod, container = "syn-serving", f"syn-llm-predictor-{_suffix(zs, 10)}-{_suffix(_mix(zs), 5)}", \
                "triton-server"
        elif kind < 0.75:
            util, sm, ten, dram = 0, 0.0, 0.0, 0.0
            fb = int(total * 0.5)
            power = P_ALLOC + (u3 - 0.5) * 4
            ns, pod, container = "syn-serving", f"syn-idle-predictor-{_suffix(zs, 10)}-{_suffix(_mix(zs), 5)}", \
                "triton-server"
        else:
            util, sm, ten, dram, fb = 0, 0.0, 0.0, 0.0, 0
            power = 62 + 16 * _u(zs, 2) + (u3 - 0.5) * 3
            clock = 345
            throttle = GPU_IDLE
        temp = 30 + 6 * _u(zs, 3) + 0.062 * power
        st = GpuState(host=host, gpu_index=g, uuid=uuid, pci_bus_id=pci, model_name=model, util_pct=util,
                      gr_active=min(0.99, sm + 0.05) if sm else 0.0, sm_active=sm, tensor_active=ten,
                      dram_active=dram, fb_used_mib=fb, fb_free_mib=total - fb, power_w=round(power, 3),
                      energy_mj=int(power * up_s * 1000.0), gpu_temp_c=round(temp), mem_temp_c=round(temp + 3),
                      sm_clock_mhz=clock, mem_clock_mhz=2619, throttle_reasons=throttle, xid=0, namespace=ns,
                      pod=pod, container=container, mem_copy_util=int(dram * 100),
                      pcie_tx_bytes=int(1e8 * u2), pcie_rx_bytes=int(8e7 * u1))
        if mig_fraction > 0 and _u(zs, 3) < mig_fraction:
            for inst, (prof, gid, share) in enumerate((("3g.40gb", 1, 0.5), ("2g.20gb", 5, 0.25),
                                                      ("1g.10gb", 13, 0.125), ("1g.10gb", 14, 0.125))):
                fb_i = int(fb * share)
                out.append(GpuState(**{**st.__dict__, "mig_profile": prof, "mig_instance": gid,
                                       "fb_used_mib": fb_i, "fb_free_mib": int(total * share) - fb_i,
                                       "pod": None if pod is None else f"{pod}-mig{inst}"}))
        else:
            out.append(st)
    return out
