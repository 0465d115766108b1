"""Reports: the monthly report's schedule, archive folder and contents.

Written as the `[reports]` table of centre.toml, or as its own file reports.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.base import Problems, Strict


class Section(Strict):
    """The [reports] settings."""


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("reports." inside centre.toml, "" in its own file)."""
