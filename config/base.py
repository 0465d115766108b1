"""What every part of the configuration shares: the error, the strict model base, the bounded
number types and the problem list that gathers every problem before raising.

The area modules (config/energy.py, billing.py, capacity.py, access.py, reports.py) import
from here, not from the package, so that the package can import them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ConfigError(Exception):
    """A configuration problem, worded for the person who edits the file."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# Numbers are numbers: strict models refuse "15" and true where a number is meant (an
# integer is accepted where a float is), and every float is finite. Durations are bounded
# so that a typo cannot stop the scheduler (inf overflows its timer) or spin it (1e-9 s).
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 86_400.0           # collection.interval_s, ui.refresh_s: 1 s .. 1 day
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.1, 600.0                # timeouts: 0.1 s .. 10 min
MAX_STALE_S = 7 * 86_400.0                               # collection.stale_after_s: 1 s .. 1 week
Number = Annotated[float, Field(allow_inf_nan=False)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(gt=0)]
IntervalS = Annotated[float, Field(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S, allow_inf_nan=False)]
TimeoutS = Annotated[float, Field(ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S, allow_inf_nan=False)]
StaleS = Annotated[float, Field(ge=MIN_INTERVAL_S, le=MAX_STALE_S, allow_inf_nan=False)]
# DuckDB cannot run its migrations below this much memory; a smaller limit fails at the
# first write instead of at start
MIN_MEMORY_LIMIT_BYTES = 64 * 1000**2
_MEMORY_UNITS = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
                 "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class Problems:
    """Every problem found, each a line naming its file and key; raised together at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: Path | str, key: str, text: str) -> None:
        self.lines.append(f"{path}: key '{key}': {text}")

    def extend(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def raise_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(dict.fromkeys(self.lines)))
