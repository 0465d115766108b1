"""Tenant attribution: which tenant a device's sample belongs to.

Precedence, first match wins (documented in README "Tenant attribution"):

1. a static lease on the device (`[[leases]] devices = [...]`) covering the sample time;
2. a static lease on the device's host (`[[leases]] hosts = [...]`) covering the sample time:
   a bare-metal renter holds the machine whatever runs on it;
3. the `[[attribution]]` rules in file order: shell-glob patterns on the namespace, pod,
   job and job user labels; every pattern a rule gives must match;
4. a tenant's own `namespaces` list (exact match);
5. otherwise none: the sample is kept as unattributed (it may still carry a pod, and then
   counts as allocated), never dropped.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from functools import lru_cache

from config import Config, Lease


def _matches(value: str | None, pattern: str) -> bool:
    return value is not None and fnmatch.fnmatchcase(value, pattern)


class Attributor:
    def __init__(self, cfg: Config):
        self.rules = [(r.tenant, (("namespace", r.namespace), ("pod", r.pod), ("job", r.job), ("job_user", r.user)))
                      for r in cfg.attribution]
        self.by_namespace = cfg.tenant_for_namespace()
        self.device_leases: dict[str, list[Lease]] = {}
        self.host_leases: dict[str, list[Lease]] = {}
        for lease in cfg.leases:
            for d in lease.devices:
                self.device_leases.setdefault(d, []).append(lease)
            for h in lease.hosts:
                self.host_leases.setdefault(h, []).append(lease)
        self._labels = lru_cache(maxsize=65536)(self._from_labels)

    @staticmethod
    def _leased(leases: list[Lease] | None, ts: datetime) -> str | None:
        for lease in leases or ():
            if lease.start <= ts and (lease.end is None or ts < lease.end):
                return lease.tenant
        return None

    def _from_labels(self, namespace: str | None, pod: str | None, job: str | None,
                     job_user: str | None) -> str | None:
        values = {"namespace": namespace, "pod": pod, "job": job, "job_user": job_user}
        for tenant, patterns in self.rules:
            if all(pat is None or _matches(values[label], pat) for label, pat in patterns):
                return tenant
        return self.by_namespace.get(namespace) if namespace is not None else None

    def tenant(self, device_id: str, host: str | None, ts: datetime, namespace: str | None,
               pod: str | None, job: str | None, job_user: str | None = None) -> str | None:
        if self.device_leases or self.host_leases:
            leased = self._leased(self.device_leases.get(device_id), ts)
            if leased is None and host is not None:
                leased = self._leased(self.host_leases.get(host), ts)
            if leased is not None:
                return leased
        return self._labels(namespace, pod, job, job_user)
