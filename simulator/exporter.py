"""dcgm-exporter and facility-meter text, rendered the way the real exporters print it.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Iterable

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
                lines = [fmt % (lab, v, xid_message(v), v, timestamp_ms) for lab, v in zip(labels, vals)]
            else:
                lines = [fmt % (lab, v, xid_message(v), v) for lab, v in zip(labels, vals)]
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
    ts = "" if timestamp_ms is None else f" {timestamp_ms}"
    s = _esc(site_id)
    meters = (
        (f'site="{s}",meter="facility-main",scope="facility"', facility_w, energy_kwh.get("facility")),
        (f'site="{s}",meter="ups-output",scope="it",pue_category="{it_pue_category}"', it_w, energy_kwh.get("it")),
        (f'site="{s}",meter="cooling-plant",scope="cooling"', cooling_w, energy_kwh.get("cooling")),
    )
    out = ["# HELP dcim_power_watts Instantaneous power at the meter.\n",
           "# TYPE dcim_power_watts gauge\n"]
    out += [f"dcim_power_watts{{{lab}}} {w:.1f}{ts}\n" for lab, w, _ in meters]
    out += ["# HELP dcim_energy_kwh_total Energy register of the meter (kWh).\n",
            "# TYPE dcim_energy_kwh_total counter\n"]
    out += [f"dcim_energy_kwh_total{{{lab}}} {e:.3f}{ts}\n" for lab, _, e in meters if e is not None]
    if outdoor_temp_c is not None:
        out += ["# HELP dcim_outdoor_temperature_celsius Outdoor dry-bulb temperature at the site.\n",
                "# TYPE dcim_outdoor_temperature_celsius gauge\n",
                f'dcim_outdoor_temperature_celsius{{site="{s}"}} {outdoor_temp_c:.1f}{ts}\n']
    return "".join(out)
