"""What a source kind declares, the options every kind's model starts from, the shared
dependencies a kind's constructor receives, and the collector base class.

This module is imported by config validation, so it stays light: pydantic and the
standard library only. A kind's collector implementation (NVML bindings, the
Prometheus client, pyarrow) is imported inside its `build`, never here, so a host
without NVIDIA's library still loads its config and runs its other sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from collectors.targets import Target
    from config import Source


class Options(BaseModel):
    """A kind's own keys of a `[[sources]]` table (the TOML stays flat: name, kind, site,
    cluster, timeout_s and retries belong to every source; the rest to its kind).

    Strict like the rest of the config: an unknown key is an error, so a key that a kind
    does not take (`host` on a dcgm source) is reported instead of silently ignored.
    A validator's message is the whole sentence after "key 'sources[i].<key>': "."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    KIND: ClassVar[str] = ""


def check_urls(targets: list[str]) -> list[str]:
    """The targets, if each is an http(s) URL that urllib reads as written (a host, a port
    within 1..65535, no spaces or control characters); else ValueError naming the first
    that is not. (urllib would otherwise read "host:70000" and let the request fail, or
    "http://a b" as a host with a space in it.)"""
    for t in targets:
        if not t.startswith(("http://", "https://")):
            raise ValueError(f"{t!r} is not an http(s) URL")
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in t):
            raise ValueError(f"{t!r} holds a space or a control character")
        try:
            parts = urlsplit(t)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{t!r} is not a URL urllib can read ({exc}); a port is 1..65535") from None
        if not parts.hostname:
            raise ValueError(f"{t!r} names no host")
        if port == 0:
            raise ValueError(f"{t!r}: port 0 is not a port to scrape; a port is 1..65535")
    return targets


class ExporterOptions(Options):
    """An exporter scraped over HTTP: one or more `/metrics` URLs, read with mapping tables."""

    targets: Annotated[list[str], Field(validate_default=True)] = []
    # where a sample's host comes from: the exporter's Hostname label, or the target's host
    # (for Kubernetes exporters whose Hostname is the pod name)
    host_from: Literal["label", "target"] = "label"
    mappings: list[str] | None = None

    @field_validator("targets")
    @classmethod
    def _need_targets(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"a {cls.KIND} source needs at least one exporter URL")
        return check_urls(v)


@dataclass(frozen=True)
class Deps:
    """What every kind's constructor may use, made once per runtime by `registry.deps`.

    `config` is there for the collectors that still take the whole Config (facility and
    prometheus); new kinds take the pieces."""

    clock: Callable[[], float]
    tracker: Any                    # collectors.batch.EventTracker, shared by the device kinds
    catalogue: Any                  # config.Catalogue
    attributor: Any                 # collectors.attribution.Attributor
    mappings: dict[str, Any]        # name -> config.MappingFile
    collection: Any                 # config.Collection (interval, default timeout)
    config: Any = None              # config.Config


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: declared by its module in collectors/kinds/, listed once in
    collectors/kinds/__init__.py."""

    name: str
    options: type[Options]
    vendor: str                                   # nvidia | amd | huawei | other
    default_mappings: tuple[str, ...]
    # build(source, deps) -> collector; imports its implementation when called
    build: Callable[["Source", Deps], "Collector"]
    # "urls": one or more exporter URLs; "one": exactly one URL; "none": no targets
    targets: Literal["urls", "one", "none"] = "urls"
    # reads exporter text: `python -m collectors parse --kind` offers it
    parses_text: bool = False
    # "module:Class" of its collector, for callers that construct it themselves
    collector: str = ""
    # source -> its targets; None: one Target per configured URL
    make_targets: Callable[["Source"], "list[Target]"] | None = None
    # the tables its mapping tables may fill (config rejects a mapping of another table:
    # a dcgm source reading a facility mapping would store nothing, cycle after cycle)
    mapping_tables: tuple[str, ...] = ("device_samples",)

    @property
    def name_key(self) -> str:
        """The i18n key of the kind's name (both languages, checked by tests/test_kinds.py)."""
        return f"sources.kind.{self.name}"


class Collector:
    """Base of every collector: lifecycle hooks with no-op defaults, so the runtime calls
    them on any collector instead of asking which it has.

    `collect(target, ts) -> Scrape` is each collector's own."""

    kind: ClassVar[str] = ""

    def start(self) -> None:
        """Start background work (NVML's XID watch); nothing by default."""

    def stop(self) -> None:
        """Stop what `start` started; nothing by default."""

    def close(self) -> None:
        """Release what the collector holds (clients, libraries); nothing by default."""

    def resume_from(self, target: "Target", ts: datetime) -> None:
        """Catch up from `ts`, the newest stored time of this source (after a restart); nothing
        by default: an exporter only knows its present."""
