"""Reports: the monthly report's schedule, archive folder and contents (issue 17).

Written as the `[reports]` table of centre.toml, or as its own file reports.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.

The schedule is site-local (the first site's time zone): day 1-28 so that every month has it.
`chromium` is the browser kaleido drives to turn charts into SVG; it is pinned to a path (Debian's
/usr/bin/chromium) and never downloaded. Without it the report is made without charts and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from config.base import Problems, Strict


class Section(Strict):
    """The [reports] settings."""

    schedule: bool = True                                        # the monthly job runs at all
    day: Annotated[int, Field(ge=1, le=28)] = 1                  # day of the month (site-local)
    hour: Annotated[int, Field(ge=0, le=23)] = 6                 # hour of that day (site-local)
    minute: Annotated[int, Field(ge=0, le=59)] = 0
    archive_dir: Annotated[str, Field(min_length=1)] = "data/reports"   # relative: the project root
    languages: Annotated[list[Literal["en", "zh-CN"]], Field(min_length=1)] = ["en", "zh-CN"]
    formats: Annotated[list[Literal["pdf", "xlsx"]], Field(min_length=1)] = ["pdf", "xlsx"]
    chromium: Annotated[str, Field(min_length=1)] = "/usr/bin/chromium"
    chart_timeout_s: Annotated[float, Field(ge=5, le=600, allow_inf_nan=False)] = 90.0
    top_tenants: Annotated[int, Field(ge=1, le=100)] = 10        # tenants named; the rest one row
    reclaim_rows: Annotated[int, Field(ge=1, le=500)] = 20       # devices in the reclaim list
    worst_hosts: Annotated[int, Field(ge=1, le=100)] = 10

    @field_validator("languages", "formats")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"each value once, got {v}")
        return v


def archive_path(section: Section, root: Path) -> Path:
    """The archive folder: `archive_dir`, a relative one under `root` (the project root)."""
    p = Path(section.archive_dir)
    return p if p.is_absolute() else root / p


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("reports." inside centre.toml, "" in its own file)."""
    where = archive_path(section, Path(__file__).resolve().parent.parent)
    if where.exists() and not where.is_dir():
        problems.add(path, f"{key}archive_dir", f"{where} is a file, not a folder for the archived reports")
