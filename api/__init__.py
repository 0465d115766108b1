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
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import config
import i18n
from queries import history as measures_history
from queries.scope import EVERYTHING, Scope
from queries.store import DatabaseUnavailable, Store

log = logging.getLogger(__name__)

StoreGetter = Callable[[], "Store | None"]


def _answer(table: measures_history.HistoryTable, fmt: str, name: str) -> Response:
    if fmt == "csv":
        return Response(table.to_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}.csv"'})
    return JSONResponse(table.to_json())


def _handler(build: Callable[..., tuple[measures_history.HistoryTable, str]], name: str, store_getter: StoreGetter,
             cfg: config.Config, clock: Callable[[], datetime]):
    async def handle(request: Request) -> Response:
        params: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if key in params:
                return JSONResponse({"error": i18n.t("history.error.repeated", "en", param=key)}, status_code=400)
            params[key] = value
        store = store_getter()
        if store is None:
            return JSONResponse({"error": i18n.t("history.error.starting", "en")}, status_code=503)
        try:
            table, fmt = await run_in_threadpool(build, store, cfg, params, clock(), _scope(request))
        except measures_history.ParamError as exc:
            return JSONResponse({"error": exc.message("en"), "parameter": exc.param}, status_code=400)
        except DatabaseUnavailable as exc:
            log.warning("api %s: %s", name, exc)
            return JSONResponse({"error": i18n.t("history.error.database", "en")}, status_code=503)
        except Exception:          # a plain message to the caller, the traceback to the log
            log.exception("api %s failed", name)
            return JSONResponse({"error": i18n.t("history.error.internal", "en")}, status_code=500)
        return _answer(table, fmt, name)
    return handle


def _scope(request: Request) -> Scope:
    """Who is asking (issue 15 fills it from the bearer token); everything while sign-in is off."""
    scope = request.scope.get("zhisuan.scope")
    return scope if isinstance(scope, Scope) else EVERYTHING


def _now() -> datetime:
    return datetime.now(timezone.utc)


def routes(store_getter: StoreGetter, cfg: config.Config, *,
           clock: Callable[[], datetime] = _now) -> list[Route]:
    """The API's routes; `store_getter()` gives the store at each call (None while starting)."""
    from api import billing, capacity, energy, history
    return [Route(path, _handler(build, name, store_getter, cfg, clock), methods=["GET"])
            for module in (history, energy, billing, capacity) for path, name, build in module.ROUTES]
