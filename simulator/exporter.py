"""dcgm-exporter, AMD and Ascend exporter and facility-meter text, rendered the way the
real exporters print it.

Two renderers produce byte-identical dcgm-exporter text:

- `render_dcgm(states)` is the general one: any iterable of `GpuState`, one
  `%`-format per sample line. Benchmarks feed it 10,000 synthetic GPUs.
- `NodeRenderer` is the simulator's fast path for one node: it caches, per set of
  (GPU, pod) labels, one format string for the whole page, so a page is a single
  `template % values`. Back-filling 30 days renders ~184,000 node pages, and the
  labels of a node change only when a job or deployment changes.

The format follows dcgm-exporter 4.x: metrics grouped with `# HELP`/`# TYPE`,
labels in the order gpu, UUID, pci_bus_id, device, modelName, [GPU_I_PROFILE,
GPU_I_ID], Hostname, DCGM_FI_DRIVER_VERSION, [container, namespace, pod]; the
XID metric adds err_code and err_msg last. Integer-typed DCGM fields print as
integers, double-typed ones with six decimals (Go's `%f`).

`render_amd` and `render_ascend` print the same `GpuState` values as the AMD
Device Metrics Exporter and Huawei's npu-exporter do (see the section below);
they serve the simulator's AMD and Ascend clusters, whose nodes are few, so
they format per call instead of caching templates.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from simulator.model import GpuState

DRIVER_VERSION = "550.127.05"


@dataclass(frozen=True)
class Metric:
    name: str
    type: str       # gauge | counter
    help: str
    attr: str       # GpuState attribute
    is_float: bool  # DCGM double field (printed %f) rather than int64


# The default field set: dcgm-exporter's default-counters.csv (PCIe byte rates and
# the DCP ratios as in dcp-metrics-included.csv) plus SM_ACTIVE, the throttle mask
# and the volatile double-bit ECC count, which the dashboard's health view reads.
METRICS: tuple[Metric, ...] = (
    Metric("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "sm_clock_mhz", False),
    Metric("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "mem_clock_mhz", False),
    Metric("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "mem_temp_c", False),
    Metric("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "gpu_temp_c", False),
    Metric("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_w", True),
    Metric("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter",
           "Total energy consumption since boot (in mJ).", "energy_mj", False),
    Metric("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", "pcie_replay", False),
    Metric("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "util_pct", False),
    Metric("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "mem_copy_util", False),
    Metric("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", "enc_util", False),
    Metric("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", "dec_util", False),
    Metric("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", "xid", False),
    Metric("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "fb_free_mib", False),
    Metric("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "fb_used_mib", False),
    Metric("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter",
           "Total number of NVLink bandwidth counters for all lanes.", "nvlink_total", False),
    Metric("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter",
           "Number of remapped rows for uncorrectable errors", "remapped_rows_uncorrectable", False),
    Metric("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter",
           "Number of remapped rows for correctable errors", "remapped_rows_correctable", False),
    Metric("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed", "row_remap_failure",
           False),
    Metric("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "gauge", "Current clock throttle reasons.", "throttle_reasons",
           False),
    Metric("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors.",
           "ecc_dbe_vol", False),
    Metric("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.", "gr_active",
           True),
    Metric("DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.",
           "sm_active", True),
    Metric("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.",
           "tensor_active", True),
    Metric("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
           "Ratio of cycles the device memory interface is active sending or receiving data.", "dram_active", True),
    Metric("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge",
           "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - "
           "in bytes per second.", "pcie_tx_bytes", False),
    Metric("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge",
           "The rate of data received over the PCIe bus - including both protocol headers and data payloads - "
           "in bytes per second.", "pcie_rx_bytes", False),
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
XID_POS = METRIC_NAMES.index("DCGM_FI_DEV_XID_ERRORS")

# err_msg for the XIDs the simulator raises (NVIDIA's XID catalogue names).
XID_MESSAGES: dict[int, str] = {
    0: "Unknown Error",
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    48: "Double Bit ECC Error",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLINK Error",
    79: "GPU has fallen off the bus",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
}


def xid_message(code: int) -> str:
    return XID_MESSAGES.get(code, "Unknown Error")


def _esc(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def gpu_labels(index: int, uuid: str, pci_bus_id: str, model: str, host: str, *,
               driver_version: str = DRIVER_VERSION, hostname_label: str = "Hostname",
               mig_profile: str | None = None, mig_instance: int | None = None,
               container: str | None = None, namespace: str | None = None, pod: str | None = None) -> str:
    """The label set of one GPU's samples, without braces, in dcgm-exporter's order."""
    out = (f'gpu="{index}",UUID="{_esc(uuid)}",pci_bus_id="{_esc(pci_bus_id)}",device="nvidia{index}",'
           f'modelName="{_esc(model)}"')
    if mig_profile is not None:
        out += f',GPU_I_PROFILE="{_esc(mig_profile)}",GPU_I_ID="{mig_instance if mig_instance is not None else 0}"'
    out += f',{hostname_label}="{_esc(host)}",DCGM_FI_DRIVER_VERSION="{_esc(driver_version)}"'
    if pod is not None:
        out += f',container="{_esc(container or "")}",namespace="{_esc(namespace or "")}",pod="{_esc(pod)}"'
    return out


def _header(m: Metric) -> str:
    return f"# HELP {m.name} {m.help}\n# TYPE {m.name} {m.type}\n"


_HEADERS = tuple(_header(m) for m in METRICS)


def _line_format(m: Metric, with_ts: bool) -> str:
    val = "%.6f" if m.is_float else "%d"
    ts = " %d" if with_ts else ""
    if m.name == "DCGM_FI_DEV_XID_ERRORS":
        return m.name + '{%s,err_code="%s",err_msg="%s"} ' + val + ts
    return m.name + "{%s} " + val + ts


def render_dcgm(states: Iterable["GpuState"], *, hostname_label: str = "Hostname",
                driver_version: str = DRIVER_VERSION, timestamp_ms: int | None = None) -> str:
    """dcgm-exporter text for any GPUs (several hosts allowed); `timestamp_ms` stamps every sample."""
    states = list(states)
    labels = [gpu_labels(s.gpu_index, s.uuid, s.pci_bus_id, s.model_name, s.host, driver_version=driver_version,
                         hostname_label=hostname_label, mig_profile=s.mig_profile, mig_instance=s.mig_instance,
                         container=s.container, namespace=s.namespace, pod=s.pod) for s in states]
    with_ts = timestamp_ms is not None
    parts: list[str] = []
    for m, header in zip(METRICS, _HEADERS):
        parts.append(header)
        if not states:
            continue
        fmt = _line_format(m, with_ts)
        attr = m.attr
        if m.is_float:
            vals = [float(getattr(s, attr)) for s in states]
        else:
            vals = [int(round(getattr(s, attr))) for s in states]
        if m.name == "DCGM_FI_DEV_XID_ERRORS":
            if with_ts:
                lines = [fmt % (lab, v, xid_message(int(v)), v, timestamp_ms) for lab, v in zip(labels, vals)]
            else:
                lines = [fmt % (lab, v, xid_message(int(v)), v) for lab, v in zip(labels, vals)]
        elif with_ts:
            lines = [fmt % (lab, v, timestamp_ms) for lab, v in zip(labels, vals)]
        else:
            lines = [fmt % (lab, v) for lab, v in zip(labels, vals)]
        parts.append("\n".join(lines))
        parts.append("\n")
    return "".join(parts)


# Fields whose value is fixed for a node's GPU between driver reloads in the simulator
# (memory clock, PCIe replays, encoder/decoder, remapped rows): NodeRenderer bakes
# them into the template, so the key a caller passes must determine them.
STATIC_FIELDS = frozenset(METRIC_NAMES.index(n) for n in (
    "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE"))
_DYNAMIC = tuple(i for i in range(len(METRICS)) if i not in STATIC_FIELDS)


class NodeRenderer:
    """Whole-page templates for one node's GPUs, cached by label set.

    `render(key, labels, rows)`: `labels` are the per-GPU label strings (used
    only on a cache miss), `rows` one tuple per GPU holding the values of
    METRICS in order, ints for integer fields. `key` must identify the labels
    and the STATIC_FIELDS values, which are baked into the template. The cache
    is bounded; replacing it wholesale is safe under threads.
    """

    def __init__(self, max_templates: int = 1024):
        self.max_templates = max_templates
        self._templates: dict = {}

    def _build(self, labels: list[str], rows: list[tuple]) -> tuple[str, ...]:
        """The page's literal text between value slots: len(slots) + 1 pieces."""
        pieces = []
        cur = []
        for i, (m, header) in enumerate(zip(METRICS, _HEADERS)):
            cur.append(header)
            xid = m.name == "DCGM_FI_DEV_XID_ERRORS"
            for lab, row in zip(labels, rows):
                cur.append(f"{m.name}{{{lab}")
                if i in STATIC_FIELDS:
                    cur.append("} " + ("%.6f" % row[i] if m.is_float else str(row[i])) + "\n")
                    continue
                if xid:
                    cur.append(',err_code="')
                    pieces.append("".join(cur))
                    pieces.append('",err_msg="')
                    cur = ['"} ']
                else:
                    cur.append("} ")
                pieces.append("".join(cur))
                cur = ["\n"]
        pieces.append("".join(cur))
        return tuple(pieces)

    def render(self, key, labels: list[str], rows: list[tuple]) -> str:
        pieces = self._templates.get(key)
        if pieces is None:
            if len(self._templates) >= self.max_templates:
                self._templates = {}
            pieces = self._templates[key] = self._build(labels, rows)
        if not rows:
            return pieces[0]
        cols = list(zip(*rows))
        vals: list[str] = []
        ext = vals.extend
        for i in _DYNAMIC:
            if i == XID_POS:
                codes = cols[i]
                if any(codes):
                    ext([v for x in codes for v in (str(x), XID_MESSAGES.get(x, "Unknown Error"), str(x))])
                else:
                    ext(("0", "Unknown Error", "0") * len(rows))
            elif METRICS[i].is_float:
                ext(map(_F6, cols[i]))
            else:
                ext(map(str, cols[i]))
        vals.append("")
        return "".join(chain.from_iterable(zip(pieces, vals)))


_F6 = "%.6f".__mod__


def render_facility(site_id: str, facility_w: float, it_w: float, cooling_w: float,
                    energy_kwh: dict[str, float], *, it_pue_category: int = 1,
                    outdoor_temp_c: float | None = None, timestamp_ms: int | None = None) -> str:
    """A site's meters as a DCIM/SNMP exporter might print them.

    Three meters: the facility intake, the UPS output (IT load, PUE category 1
    by default) and the cooling plant. `energy_kwh` maps scope ("facility",
    "it", "cooling") to that meter's cumulative register.
    """
    meters = [("facility-main", "facility", None, facility_w, energy_kwh.get("facility")),
              ("ups-output", "it", it_pue_category, it_w, energy_kwh.get("it")),
              ("cooling-plant", "cooling", None, cooling_w, energy_kwh.get("cooling"))]
    return render_facility_meters(site_id, meters, outdoor_temp_c=outdoor_temp_c, timestamp_ms=timestamp_ms)


def render_facility_meters(site_id: str, meters: list[tuple[str, str, int | None, float, float | None]], *,
                           outdoor_temp_c: float | None = None, timestamp_ms: int | None = None) -> str:
    """Any set of a site's meters, each (meter, scope, PUE category or None, power W, register
    kWh or None for a meter that reports power only), as a DCIM/SNMP exporter prints them."""
    ts = "" if timestamp_ms is None else f" {timestamp_ms}"
    s = _esc(site_id)
    labelled = [(f'site="{s}",meter="{_esc(name)}",scope="{scope}"'
                 + (f',pue_category="{cat}"' if cat is not None else ""), w, e) for name, scope, cat, w, e in meters]
    out = ["# HELP dcim_power_watts Instantaneous power at the meter.\n",
           "# TYPE dcim_power_watts gauge\n"]
    out += [f"dcim_power_watts{{{lab}}} {w:.1f}{ts}\n" for lab, w, _ in labelled]
    out += ["# HELP dcim_energy_kwh_total Energy register of the meter (kWh).\n",
            "# TYPE dcim_energy_kwh_total counter\n"]
    out += [f"dcim_energy_kwh_total{{{lab}}} {e:.3f}{ts}\n" for lab, _, e in labelled if e is not None]
    if outdoor_temp_c is not None:
        out += ["# HELP dcim_outdoor_temperature_celsius Outdoor dry-bulb temperature at the site.\n",
                "# TYPE dcim_outdoor_temperature_celsius gauge\n",
                f'dcim_outdoor_temperature_celsius{{site="{s}"}} {outdoor_temp_c:.1f}{ts}\n']
    return "".join(out)


# ---------------------------------------------------------------- AMD and Ascend exporters
#
# For clusters whose accelerator the catalogue lists under vendor "amd" or "huawei",
# the simulator serves the same GpuState values in that vendor's exporter format.
# Both exporters are Go programs on client_golang: families sorted by name, each
# series' labels sorted by name, series sorted by their label values, values in
# Go's shortest float form (strconv 'g', -1: e-notation from 1e6 up).

def go_float(v: float) -> str:
    """A sample value as client_golang prints it (Go's strconv.FormatFloat(v, 'g', -1, 64))."""
    if v == 0:
        return "0"
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if -1e6 < v < 1e6 and v == int(v):
        return str(int(v))
    r = repr(float(v))
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mant, _, exp = r.partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + (int(exp) if exp else 0) - (len(whole + frac) - len((whole + frac).lstrip("0")))
    digits = digits.rstrip("0") or "0"
    e = point - 1
    if e < -4 or e >= 6:
        return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _f32(v: float) -> float:
    """v through a Go float32 (the Ascend exporter keeps power and voltage as float32)."""
    return struct.unpack("f", struct.pack("f", v))[0]


# XIDs after which the vendors' own health checks would call the device unhealthy:
# uncorrectable ECC (48, 94, 95) and fallen off the bus (79); so would a failed row remap.
_FATAL_XIDS = frozenset((48, 79, 94, 95))


def vendor_health(s: "GpuState") -> int:
    """The exporter's own verdict for a simulated device: 1 healthy, 0 unhealthy."""
    return 0 if s.xid in _FATAL_XIDS or s.row_remap_failure else 1


def _hex_id(s: "GpuState") -> str:
    return s.uuid[4:] if s.uuid.startswith("GPU-") else s.uuid


def amd_serial(s: "GpuState") -> str:
    """A 12-digit board serial number, stable per simulated GPU."""
    return f"69{int(_hex_id(s).replace('-', '')[:12], 16) % 10**10:010d}"


# MI300X boards print this part number as card_model (card_series holds the name)
AMD_PART_NUMBERS = {"MI300X": "102-G30211-0C"}
AMD_DRIVER_VERSION = "6.10.5"
AMD_VBIOS_VERSION = "022.040.003.043.000001"

# (name, help, value of a GpuState); the gpu_clock family is rendered separately
AMD_METRICS: tuple[tuple[str, str, Callable[[GpuState], float]], ...] = (
    ("gpu_ecc_correct_total", "Total Correctable error count", lambda s: 0),
    ("gpu_ecc_uncorrect_total", "Total Uncorrectable error count", lambda s: s.ecc_dbe_vol),
    ("gpu_energy_consumed", "Accumulated energy consumed by the GPU in uJ", lambda s: s.energy_mj * 1000),
    ("gpu_free_vram", "Free VRAM memory of the GPU (in MB)", lambda s: int(s.fb_free_mib)),
    ("gpu_gfx_activity", "Graphics engine usage in Percentage (0-100)", lambda s: int(s.util_pct)),
    ("gpu_health", "Health of the GPU (0 = Unhealthy | 1 = Healthy)", vendor_health),
    ("gpu_junction_temperature", "Current junction/hotspot temperature in Celsius", lambda s: int(s.gpu_temp_c)),
    ("gpu_memory_temperature", "Current memory temperature in Celsius", lambda s: int(s.mem_temp_c)),
    ("gpu_package_power", "Current socket power in Watts", lambda s: int(round(s.power_w))),
    ("gpu_power_usage", "GPU Power usage in Watts", lambda s: int(round(s.power_w))),
    ("gpu_prof_sm_active", "The percentage of GPUTime vector ALU instructions are processed. "
                           "Value range: 0% (bad) to 100% (optimal)", lambda s: round(s.sm_active * 100, 2)),
    ("gpu_prof_tensor_active_percent", "MFMA Utilization Unit percent", lambda s: round(s.tensor_active * 100, 2)),
    ("gpu_total_vram", "Total VRAM memory of the GPU (in MB)", lambda s: int(s.fb_free_mib + s.fb_used_mib)),
    ("gpu_umc_activity", "Memory engine usage in Percentage (0-100)", lambda s: int(round(s.dram_active * 100))),
    ("gpu_used_vram", "Used VRAM memory of the GPU (in MB)", lambda s: int(s.fb_used_mib)),
)
# (clock_index, clock_type): eight XCD graphics clocks, then memory, video, data fabric, SoC
_AMD_CLOCKS = tuple((str(i), "system") for i in range(8)) + (("8", "memory"), ("9", "video"), ("10", "data"),
                                                              ("11", "soc"))
_AMD_CLOCK_ORDER = tuple(sorted(_AMD_CLOCKS))        # series sort by label value: "10" < "11" < "2"


def _amd_clock(s: "GpuState", kind: str) -> float:
    if kind == "system":
        return s.sm_clock_mhz
    if kind == "memory":
        return s.mem_clock_mhz
    busy = s.util_pct > 0
    return {"video": 1000 if busy else 29, "data": 1400 if busy else 22, "soc": 1143 if busy else 28}[kind]


def amd_labels(s: "GpuState", *, card_series: str, card_model: str,
               driver_version: str = AMD_DRIVER_VERSION) -> tuple[tuple, str, str]:
    """(sort key, labels before clock_index, labels after clock_type) of one GPU, names sorted.

    The label set of a Kubernetes node under the GPU Operator: GPU_UUID and
    CARD_SERIES enabled, pod labels empty on unallocated GPUs.
    """
    vals = {"card_model": card_model, "card_series": card_series, "card_vendor": "AMD", "cluster_name": "",
            "container": s.container or "", "driver_version": driver_version, "gpu_compute_partition_type": "spx",
            "gpu_id": str(s.gpu_index), "gpu_memory_partition_type": "nps1", "gpu_partition_id": "0",
            "gpu_uuid": _hex_id(s), "hostname": s.host, "namespace": s.namespace or "", "pod": s.pod or "",
            "serial_number": amd_serial(s), "vbios_version": AMD_VBIOS_VERSION}
    head = ",".join(f'{k}="{_esc(vals[k])}"' for k in ("card_model", "card_series", "card_vendor"))
    tail = ",".join(f'{k}="{_esc(v)}"' for k, v in vals.items() if not k.startswith("card_"))
    return tuple(vals.values()), head, tail


def render_amd(states: Iterable["GpuState"], *, card_series: str | None = None,
               card_model: str | None = None) -> str:
    """AMD Device Metrics Exporter text for GPUs of one host (profiler metrics enabled).

    `card_series` defaults to each GPU's model name; `card_model` to the part
    number AMD_PART_NUMBERS knows for it, else the model name.
    """
    gpus = []
    for s in states:
        series = card_series or s.model_name
        model = card_model or next((p for k, p in AMD_PART_NUMBERS.items() if k in series), series)
        key, head, tail = amd_labels(s, card_series=series, card_model=model)
        gpus.append((key, head, tail, s))
    gpus.sort(key=lambda g: g[0])
    out = ["# HELP gpu_clock List of current GPU clock frequencies in MHz\n# TYPE gpu_clock gauge\n"]
    for idx, kind in _AMD_CLOCK_ORDER:
        for _, head, tail, s in gpus:
            out.append(f'gpu_clock{{{head},clock_index="{idx}",clock_type="{kind}",{tail}}} '
                       f'{go_float(_amd_clock(s, kind))}\n')
    for name, help_text, value in AMD_METRICS:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        out.extend(f"{name}{{{head},{tail}}} {go_float(value(s))}\n" for _, head, tail, s in gpus)
    if gpus:
        host = gpus[0][3].host
        out.append(f'# HELP gpu_nodes_total Number of GPUs in the node\n# TYPE gpu_nodes_total gauge\n'
                   f'gpu_nodes_total{{cluster_name="",hostname="{_esc(host)}"}} {len(gpus)}\n')
    return _sorted_families(out)


def _family_of(chunk: str) -> str:
    return chunk.split(" ", 3)[2] if chunk.startswith("# HELP") else chunk.split("{", 1)[0]


def _sorted_families(chunks: list[str]) -> str:
    """Join rendered chunks with the families in name order, as client_golang gathers them."""
    fams: dict[str, list[str]] = {}
    for c in chunks:
        fams.setdefault(_family_of(c), []).append(c)
    return "".join("".join(fams[k]) for k in sorted(fams))


def ascend_vdie_id(s: "GpuState") -> str:
    """The die id npu-smi prints: five groups of eight upper-case hex digits, stable per chip."""
    h = _hex_id(s).replace("-", "").upper()
    tail = f"{int(h[:8], 16) ^ int(h[24:], 16):08X}"
    return "-".join((h[0:8], h[8:16], h[16:24], h[24:32], tail))


ASCEND_ERROR_CODE = 0x80E01801      # shown on an unhealthy chip (a HBM multi-bit ECC fault code)

# (name, help, value of a GpuState, timestamped); every chip metric carries the exporter's read time
ASCEND_METRICS: tuple[tuple[str, str, Callable[[GpuState], float]], ...] = (
    ("npu_chip_info_aicore_current_freq", "the npu ai core current frequency, unit is 'MHz'",
     lambda s: int(s.sm_clock_mhz)),
    ("npu_chip_info_cube_utilization", "the cube utilization", lambda s: int(round(s.tensor_active * 100))),
    ("npu_chip_info_error_code", "the npu error code", lambda s: 0 if vendor_health(s) else ASCEND_ERROR_CODE),
    ("npu_chip_info_hbm_ecc_double_bit_error_cnt", "HBM Double Bit Error Count", lambda s: s.ecc_dbe_vol),
    ("npu_chip_info_hbm_ecc_single_bit_error_cnt", "HBM Single Bit Error Count", lambda s: 0),
    ("npu_chip_info_hbm_ecc_total_double_bit_error_cnt", "HBM Double Bit Aggregate Total Err Cnt",
     lambda s: s.ecc_dbe_vol),
    ("npu_chip_info_hbm_temperature", "the npu hbm temperature", lambda s: int(s.mem_temp_c)),
    ("npu_chip_info_hbm_total_memory", "the npu hbm total memory", lambda s: int(s.fb_free_mib + s.fb_used_mib)),
    ("npu_chip_info_hbm_used_memory", "the npu hbm used memory", lambda s: int(s.fb_used_mib)),
    ("npu_chip_info_hbm_utilization", "the npu hbm utilization",
     lambda s: int(100 * s.fb_used_mib / max(1, s.fb_free_mib + s.fb_used_mib))),
    ("npu_chip_info_health_status", "the npu health status", vendor_health),
    ("npu_chip_info_overall_utilization", "the overall utilization of npu", lambda s: int(s.util_pct)),
    ("npu_chip_info_power", "the npu power", lambda s: _f32(round(s.power_w, 1))),
    ("npu_chip_info_process_info_num", "the npu process num", lambda s: 1 if s.pod else 0),
    ("npu_chip_info_temperature", "the npu temperature", lambda s: int(s.gpu_temp_c)),
    ("npu_chip_info_utilization", "the ai core utilization", lambda s: int(s.util_pct)),
    ("npu_chip_info_vector_utilization", "the vector utilization", lambda s: int(round(s.sm_active * 15))),
    ("npu_chip_info_voltage", "the npu voltage", lambda s: _f32(0.8 if s.util_pct else 0.75)),
)


def ascend_labels(s: "GpuState") -> tuple[tuple, str]:
    """(sort key, label string) of one chip, names sorted as the exporter prints them."""
    pci = s.pci_bus_id[4:] if len(s.pci_bus_id) == 16 else s.pci_bus_id    # 0000:1B:00.0, npu-smi's form
    vals = {"container_name": s.container or "", "id": str(s.gpu_index), "model_name": s.model_name,
            "namespace": s.namespace or "", "pcie_bus_info": pci, "pod_name": s.pod or "",
            "vdie_id": ascend_vdie_id(s)}
    return tuple(vals.values()), ",".join(f'{k}="{_esc(v)}"' for k, v in vals.items())


ASCEND_CHIP_READ_MS = 100      # the simulated npu-exporter reads one chip every 100 ms


def render_ascend(states: Iterable["GpuState"], *, timestamp_ms: int) -> str:
    """Huawei npu-exporter text for the NPUs of one host. Like the real exporter, which reads the
    chips one after another (by id) into its cache, each chip's samples carry that chip's read
    time: the last chip `timestamp_ms`, each one before it ASCEND_CHIP_READ_MS earlier."""
    chips = sorted((ascend_labels(s) + (s,) for s in states), key=lambda c: c[0])
    last = max((s.gpu_index for *_, s in chips), default=0)
    stamps = [f" {timestamp_ms - (last - s.gpu_index) * ASCEND_CHIP_READ_MS}\n" for *_, s in chips]
    out = [f"# HELP machine_npu_nums Amount of npu installed on the machine.\n"
           f"# TYPE machine_npu_nums gauge\nmachine_npu_nums {len(chips)}\n"]
    for name, help_text, value in ASCEND_METRICS:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        out.extend(f"{name}{{{lab}}} {go_float(value(s))}{ts}" for (_, lab, s), ts in zip(chips, stamps))
    out.append("# HELP npu_chip_info_name the Ascend npu name with value '1'\n# TYPE npu_chip_info_name gauge\n")
    out.extend(f"npu_chip_info_name{{{lab.replace(',model_name=', ',name=', 1)}}} 1{ts}"
               for (_, lab, s), ts in zip(chips, stamps))
    return _sorted_families(out)
