"""Kind `ipmi`: the Prometheus community ipmi_exporter; each server's input power (DCMI) as an
IT meter at PUE category 3 in facility_samples (collectors/ipmi.py, mappings/ipmi.toml).

Targets are the exporter's URLs: `http://node-07:9290/metrics` for the node it runs on, or
`http://ipmi-exporter:9290/ipmi?module=dcmi&target=bmc-node-07` for one server's BMC over
the network (the exporter's multi-target mode). Each target is one server (its `host`)."""

from __future__ import annotations

from collectors.kinds.base import Deps, ExporterOptions, SourceKind


class IpmiOptions(ExporterOptions):
    KIND = "ipmi"


def targets(source):
    from collectors.ipmi import server_of
    from collectors.targets import Target

    return [Target(url=u, source=source.name, kind="ipmi", site=source.site, cluster=source.cluster,
                   host=server_of(u)) for u in source.targets]


def build(source, deps: Deps):
    from collectors.ipmi import IpmiCollector

    return IpmiCollector.for_source(source, deps)


KIND = SourceKind(name="ipmi", options=IpmiOptions, vendor="other", default_mappings=("ipmi",), build=build,
                  collector="collectors.ipmi:IpmiCollector", make_targets=targets,
                  mapping_tables=("facility_samples",))
