"""Access: sign-in through OIDC, the mapping from ID-token claims to roles and tenants, session
timeout, API tokens.

Written as the `[access]` table of centre.toml, or as its own file access.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.base import Problems, Strict


class Section(Strict):
    """The [access] settings."""


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("access." inside centre.toml, "" in its own file)."""
