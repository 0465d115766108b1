"""Kind `facility`: a DCIM / SNMP / Modbus meter exporter's URL, read with mappings/facility.toml
into facility_samples (each meter's scope and PUE category come from its labels).

The collector (collectors/facility.py) still takes the whole Config; its timeout is the source's."""

from __future__ import annotations

from dataclasses import replace

from collectors.kinds.base import Collector, Deps, ExporterOptions, SourceKind


class FacilityOptions(ExporterOptions):
    KIND = "facility"


def build(source, deps: Deps):
    from collectors.facility import FacilityCollector

    class Facility(FacilityCollector, Collector):
        """FacilityCollector with the common lifecycle defaults."""

    cfg = deps.config
    if source.timeout_s is not None:
        cfg = replace(cfg, collection=cfg.collection.model_copy(update={"timeout_s": source.timeout_s}))
    return Facility(cfg, mapping=source.mapping_names[0] if source.mapping_names else "facility")


KIND = SourceKind(name="facility", options=FacilityOptions, vendor="other", default_mappings=("facility",),
                  build=build, collector="collectors.facility:FacilityCollector",
                  mapping_tables=("facility_samples",))
