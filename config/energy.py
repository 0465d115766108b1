"""Energy: facility meters and their hierarchy (site -> hall -> cooling loop), PUE category and
targets, tariffs with time-of-use periods, carbon and coal factors, site power and cooling capacity.

Written as the `[energy]` table of centre.toml, or as its own file energy.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.base import Problems, Strict


class Section(Strict):
    """The [energy] settings."""


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("energy." inside centre.toml, "" in its own file)."""
