"""The source kinds: one module per kind, listed here one line each.

Adding a kind is one new module in this package (declaring `KIND`, a
`base.SourceKind`) plus its line below; docs/adding-a-source-kind.md walks
through it. The modules are light (see base.py): config validation reads them.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from collectors.kinds.base import SourceKind

MODULES: tuple[str, ...] = (
    "dcgm",
    "amd",
    "ascend",
    "nvml",
    "prometheus",
    "facility",
    "ipmi",
)


@lru_cache(maxsize=1)
def kinds() -> dict[str, SourceKind]:
    """kind name -> its declaration, in the order listed above."""
    out: dict[str, SourceKind] = {}
    for name in MODULES:
        kind = importlib.import_module(f"{__name__}.{name}").KIND
        if kind.name in out:
            raise ValueError(f"collectors/kinds/{name}.py: kind {kind.name!r} is declared twice")
        out[kind.name] = kind
    return out


def vendor_of_mapping(mapping: str) -> str:
    """The vendor of the kind whose own mapping table `mapping` is ("dcgm" -> nvidia), else
    "other": what a Prometheus source reading that table stamps on devices the catalogue does
    not know."""
    for kind in kinds().values():
        if kind.default_mappings == (mapping,) and kind.vendor != "other":
            return kind.vendor
    return "other"
