"""One context per browser session: config, store, language, filters and who is looking (scope).

`ui.main` builds it once per session (kept in `st.session_state`), refreshes the
reader's language and filters on every run, and passes it to the page functions;
pages read nothing process-wide.

The store: in the server, the owner's store, which app.py's `st.App` lifespan
put in the app's state (one owner per database file; pages and collectors share
its connection, a cursor per call). Anywhere else (AppTest, a second dashboard
looking at a file it does not own, e.g. while `python -m collectors run` owns
it) the file is opened read-only, once per process. DuckDB refuses even a
read-only open while another process writes the file; that is reported as such.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

import config
import i18n
from queries import Store
from queries.store import shared_store
from queries.scope import EVERYTHING, Scope

SESSION_KEY = "page_context"


@dataclass
class PageContext:
    cfg: config.Config
    store: Store
    lang: str = i18n.DEFAULT
    filters: dict[str, str | None] = field(default_factory=dict)
    scope: Scope = EVERYTHING          # who is looking: ui.main sets it on every run (sign-in, or the demo's view-as)

    def t(self, key: str, **values: object) -> str:
        return i18n.t(key, self.lang, **values)

    def render(self, stored_json: str | None, text: str | None) -> str:
        """A stored message (keys, or English for rows written before keys) in the reader's language."""
        return i18n.render(stored_json, text, self.lang)


def owner_store() -> Store | None:
    """The store of the owner process: app.py's lifespan state, when this is the server; else
    one published with queries.store.set_shared_store (a test's writable store, so that what
    pages write, the audit, can be read back)."""
    server = sys.modules.get("app")                 # the server imports app.py as `app`
    app = getattr(server, "app", None)
    if not isinstance(app, st.App):
        return shared_store()
    store = app.state.get("store")
    return store if isinstance(store, Store) else None


@st.cache_resource(show_spinner=False)
def _read_only_store(path: str, memory_limit: str) -> Store:
    if path != ":memory:" and not Path(path).exists():
        Store(path, memory_limit=memory_limit).close()      # an empty file with the schema, not ours to fill
    return Store(path, read_only=True, memory_limit=memory_limit)


def page_store(cfg: config.Config) -> Store:
    return owner_store() or _read_only_store(str(cfg.db_path), cfg.database.memory_limit)


def build(cfg: config.Config) -> PageContext:
    """The session's context, built on its first run."""
    ctx = st.session_state.get(SESSION_KEY)
    if not isinstance(ctx, PageContext) or ctx.cfg is not cfg:
        ctx = PageContext(cfg=cfg, store=page_store(cfg))
        st.session_state[SESSION_KEY] = ctx
    return ctx


def current() -> PageContext:
    """The context `ui.main` built for this session (page scripts call their page function with it)."""
    ctx = st.session_state.get(SESSION_KEY)
    if not isinstance(ctx, PageContext):
        raise RuntimeError("no page context: pages are run through app.py (ui.main)")
    return ctx
