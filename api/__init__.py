"""The JSON/CSV API on the dashboard server: `/api/v1/...`, one module an area (api/history.py:
utilisation and tenants; api/energy.py, api/billing.py, api/capacity.py), each listing its
`ROUTES` as (path, name, build); a build takes (store, cfg, params, now, scope) and returns the
table and the format asked for.

Plain Starlette handlers (no Streamlit): app.py adds `routes(store_getter, cfg)` beside
/healthz. Each answer is a table queries/history.py builds, the same one the pages show,
as `{"columns": [{"name", "unit"}, ...], "rows": [...]}` or, with `format=csv`, as CSV with
the same columns. A bad parameter is HTTP 400 `{"error": ...}` naming the parameter and what
was expected; any other failure is a 500 or 503 with a plain message, never a traceback
(which goes to the server log).

The store comes from `store_getter()` at each call: the owner's store, put in the app's
state by its lifespan (so the routes can be made before the store exists).

Who is asking (issue 15, docs/access.md): `AccessMiddleware` (app.py adds it) reads the bearer
token of every /api/ and /healthz request (queries/tokens.py) and puts its Scope in the
request's scope as "zhisuan.scope"; each route then checks the scope's role against the roles
of its area (queries/access.route_roles) and hands the scope to its build, which filters a
tenant's rows below the table. Without a token: 401, except while sign-in is off for a caller
on this machine (the server then serves 127.0.0.1 only; app.py refuses any other address), who
gets everything, as the pages do. A bad or revoked token is a 401, a role that may not read the
route a 403, each with a plain message and an audit row; every call with a token is audited.
"""

from __future__ import annotations

import logging

import orjson
from datetime import datetime, timezone
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

import config
import i18n
from queries import access, audit, tokens
from queries import history as measures_history
from queries.scope import EVERYTHING, Scope
from queries.store import DatabaseUnavailable, Store

log = logging.getLogger(__name__)

StoreGetter = Callable[[], "Store | None"]


def _answer(table: measures_history.HistoryTable, fmt: str, name: str) -> Response:
    if fmt == "csv":
        return Response(table.to_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}.csv"'})
    # orjson: the body of a 1,440-row, 15-column answer in about 1 ms, where the standard
    # library's encoder (JSONResponse) took 7 ms, a third of the whole answer
    return Response(orjson.dumps(table.to_json()), media_type="application/json")


def _handler(build: Callable[..., tuple[measures_history.HistoryTable, str]], name: str, store_getter: StoreGetter,
             cfg: config.Config, clock: Callable[[], datetime], roles: tuple[str, ...] = access.STAFF_EVERYWHERE,
             require_scope: bool = False):
    async def handle(request: Request) -> Response:
        if require_scope and not isinstance(request.scope.get(SCOPE_KEY), Scope):
            return _unauthorised("access.api.no_token")      # the middleware did not run: refuse, never guess
        scope = _scope(request)
        if not access.may_open(scope, roles):
            store = store_getter()
            if store is not None:
                await run_in_threadpool(audit.record, store, scope, "denied", request.url.path,
                                        f"role {scope.role}; the route is for {', '.join(roles)}")
            return JSONResponse({"error": i18n.t("access.api.forbidden", "en", role=scope.role,
                                                 path=request.url.path, roles=", ".join(roles))},
                                status_code=403)
        params: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                return JSONResponse({"error": i18n.t("history.error.repeated", "en", param=key)}, status_code=400)
            params[key] = value
        store = store_getter()
        if store is None:
            return JSONResponse({"error": i18n.t("history.error.starting", "en")}, status_code=503)
        try:
            table, fmt = await run_in_threadpool(build, store, cfg, params, clock(), scope)
            return await run_in_threadpool(_answer, table, fmt, name)      # converting may fail too
        except measures_history.ParamError as exc:
            return JSONResponse({"error": exc.message("en"), "parameter": exc.param}, status_code=400)
        except DatabaseUnavailable as exc:
            log.warning("api %s: %s", name, exc)
            return JSONResponse({"error": i18n.t("history.error.database", "en")}, status_code=503)
        except Exception:          # a plain message to the caller, the traceback to the log
            log.exception("api %s failed", name)
            return JSONResponse({"error": i18n.t("history.error.internal", "en")}, status_code=500)
    return handle


def _scope(request: Request) -> Scope:
    """Who is asking (AccessMiddleware put it there); everything where no middleware runs (tests
    of the routes alone)."""
    scope = request.scope.get(SCOPE_KEY)
    return scope if isinstance(scope, Scope) else EVERYTHING


SCOPE_KEY = "zhisuan.scope"


def bearer(headers: Any) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None without one."""
    value = headers.get("authorization") or ""
    kind, _, token = value.partition(" ")
    return token.strip() or None if kind.lower() == "bearer" else None


class AccessMiddleware:
    """Authenticates the API's and /healthz's callers (see the module docstring); every other
    path (the pages, Streamlit's own routes, websockets) passes untouched."""

    def __init__(self, app: ASGIApp, *, store_getter: StoreGetter, cfg: config.Config,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.app, self.store_getter, self.cfg = app, store_getter, cfg
        self.clock = clock or _now

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not ("/api/" in path or path.endswith("/healthz")):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = bearer(request.headers)
        client = request.client.host if request.client else None
        store = self.store_getter()
        who: Scope | None = None
        if token is not None:
            if store is None:
                await JSONResponse({"error": i18n.t("history.error.starting", "en")}, status_code=503)(
                    scope, receive, send)
                return
            who = await run_in_threadpool(tokens.authenticate, store, token, now=self.clock())
            if who is None:
                await run_in_threadpool(audit.record, store, f"client {client}", "denied", path,
                                        "invalid or revoked API token")
                await _unauthorised("access.api.bad_token")(scope, receive, send)
                return
            await run_in_threadpool(audit.record, store, who, "token_use", path, request.url.query or None)
        elif not self.cfg.access.enabled and access.is_loopback(client):
            who = EVERYTHING
        elif path != "/healthz":
            if store is not None:
                await run_in_threadpool(audit.record, store, f"client {client}", "denied", path, "no API token")
            await _unauthorised("access.api.no_token")(scope, receive, send)
            return
        scope[SCOPE_KEY] = who
        await self.app(scope, receive, send)


def _unauthorised(key: str) -> JSONResponse:
    return JSONResponse({"error": i18n.t(key, "en")}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="zhisuan"'})


def middleware(store_getter: StoreGetter, cfg: config.Config, *,
               clock: Callable[[], datetime] | None = None) -> list[Middleware]:
    """The API's access middleware, for st.App(middleware=...) (or a test's Starlette app)."""
    return [Middleware(AccessMiddleware, store_getter=store_getter, cfg=cfg, clock=clock)]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def routes(store_getter: StoreGetter, cfg: config.Config, *,
           clock: Callable[[], datetime] = _now, require_scope: bool = False) -> list[Route]:
    """The API's routes; `store_getter()` gives the store at each call (None while starting).
    With `require_scope` (the server: app.py) a request the access middleware has not seen is
    refused rather than answered as everything."""
    return [Route(path, _handler(build, name, store_getter, cfg, clock, access.route_roles(module), require_scope),
                  methods=["GET"])
            for module in modules() for path, name, build in module.ROUTES]


def modules() -> list[Any]:
    """The api/<area>.py modules, each with its ROUTES: history, energy, billing, capacity, then any
    other area's module in this folder (reports, and whatever comes later), so a new area's
    routes are served, checked for roles and walked by the tenant-isolation test without a line
    here."""
    import importlib
    import pkgutil

    from api import billing, capacity, energy, history
    known = [history, energy, billing, capacity]
    names = {m.__name__ for m in known}
    later = [importlib.import_module(f"api.{info.name}") for info in sorted(pkgutil.iter_modules(__path__),
                                                                            key=lambda i: i.name)
             if f"api.{info.name}" not in names and not info.name.startswith("_")]
    return known + [m for m in later if isinstance(getattr(m, "ROUTES", None), list)]
