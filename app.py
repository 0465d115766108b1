"""The dashboard: `streamlit run app.py`.

This file plays two parts. Imported by the server (`streamlit run` finds the
`st.App` below and serves it), it is the owner process: its lifespan loads and
validates config/, opens the DuckDB file, and starts the collector runtime
(simulator, scrapes, jobs, back-fill) once, before any browser connects; it
stops them at shutdown (the scheduler's stop stores what is queued, or spills it
to the spool folder), and it answers /healthz: 200 with "status" "ok" or
"degraded" and the reasons, 503 when collection has failed or not yet started.
/ui, a path people try, redirects to the dashboard. The lifespan's state holds the
runtime and the owner's store; each session's page context takes the store from
there (pages/context.py). Run by Streamlit as each session's script
(`__name__ == "__main__"`), it draws the navigation and the pages.

Access (docs/access.md): sign-in, when config/access.toml turns it on, is Streamlit's st.login,
given the site's OIDC settings as the app's `[auth]` secrets; the API's middleware reads bearer
tokens. Without sign-in the dashboard refuses to start on any address but this machine's.
/healthz stays open: to a caller without a staff token, while sign-in is on, it says only
its status.
"""

from __future__ import annotations

import streamlit as st

if __name__ == "__main__":
    from pages import ui

    ui.main()
else:
    import logging
    import sys
    from contextlib import asynccontextmanager

    from starlette.requests import Request
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Route

    import api
    import config
    from collectors.runtime import Runtime
    from config.access import streamlit_secrets
    from queries import DatabaseUnavailable, Store
    from queries.access import start_problem
    from queries.scope import Scope

    from streamlit.runtime.pages_manager import PagesManager

    # Every run goes through ui.main's navigation (and its access gate). Streamlit would treat
    # the pages/ folder beside this file as a page directory until the first st.navigation
    # call, so a server's first request for /live or /tenants would run that page file on its
    # own; the pages refuse to run without the session's context, but no page should be
    # reached around the gate at all.
    PagesManager.uses_pages_directory = False

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Both checks run when the server imports this file, before it serves anything, so a
    # bad config or a database that cannot be opened (owned by another process, damaged,
    # an unusable path) ends start-up with one clear message and no traceback.
    try:
        CONFIG = config.load()
    except config.ConfigError as exc:
        print(f"Configuration error, dashboard not started:\n{exc}", file=sys.stderr)
        sys.exit(2)
    REFUSED = start_problem(CONFIG, st.config.get_option("server.address"))
    if REFUSED:
        print(REFUSED, file=sys.stderr)
        sys.exit(4)
    try:
        STORE = Store(CONFIG.db_path, memory_limit=CONFIG.database.memory_limit, owner=CONFIG.owner)
    except DatabaseUnavailable as exc:
        print(f"Dashboard not started: {exc}", file=sys.stderr)
        sys.exit(3)
    except Exception as exc:            # anything the store does not word itself: its words, no traceback
        print(f"Dashboard not started: the database {CONFIG.db_path} could not be opened: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)

    @asynccontextmanager
    async def lifespan(_app):
        runtime = Runtime(CONFIG, STORE).start()
        try:
            yield {"runtime": runtime, "store": STORE}
        finally:
            runtime.stop()
            STORE.close()

    async def healthz(request: Request) -> JSONResponse:
        runtime = app.state.get("runtime")
        if not isinstance(runtime, Runtime) or not runtime.started:
            return JSONResponse({"status": "starting"}, status_code=503)
        health = runtime.health()
        code = 503 if health["status"] == "failed" else 200
        who = request.scope.get(api.SCOPE_KEY)
        if CONFIG.access.enabled and not (isinstance(who, Scope) and who.role in ("noc", "manager", "admin")):
            return JSONResponse({"status": health["status"]}, status_code=code)
        return JSONResponse(health, status_code=code)

    async def to_dashboard(request: Request) -> RedirectResponse:
        return RedirectResponse("/", status_code=307)

    app = st.App(__file__, lifespan=lifespan, secrets=streamlit_secrets(CONFIG.access, CONFIG.directory),
                 middleware=api.middleware(lambda: STORE, CONFIG),
                 routes=[Route("/healthz", healthz), Route("/ui", to_dashboard), Route("/ui/{rest:path}", to_dashboard),
                         *api.routes(lambda: STORE, CONFIG, require_scope=True)])
