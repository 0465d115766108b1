"""The JSON/CSV API on the dashboard server: `/api/v1/utilisation` and `/api/v1/tenants`.

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
from queries import history
from queries.store import DatabaseUnavailable, Store

log = logging.getLogger(__name__)

StoreGetter = Callable[[], "Store | None"]


def _answer(table: history.HistoryTable, fmt: str, name: str) -> Response:
    if fmt == "csv":
        return Response(table.to_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}.csv"'})
    return JSONResponse(table.to_json())


def utilisation_table(store: Store, cfg: config.Config, params: dict[str, str],
                      now: datetime) -> tuple[history.HistoryTable, str]:
    view, fmt = history.api_view(params, cfg, store, route="utilisation")
    return history.utilisation(store, cfg, view, now), fmt


def tenants_table(store: Store, cfg: config.Config, params: dict[str, str],
                  now: datetime) -> tuple[history.HistoryTable, str]:
    view, fmt = history.api_view(params, cfg, store, route="tenants")
    return history.tenants(store, cfg, view, now, trend=False), fmt


def _handler(build: Callable[..., tuple[history.HistoryTable, str]], name: str, store_getter: StoreGetter,
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
            table, fmt = await run_in_threadpool(build, store, cfg, params, clock())
        except history.ParamError as exc:
            return JSONResponse({"error": exc.message("en"), "parameter": exc.param}, status_code=400)
        except DatabaseUnavailable as exc:
            log.warning("api %s: %s", name, exc)
            return JSONResponse({"error": i18n.t("history.error.database", "en")}, status_code=503)
        except Exception:          # a plain message to the caller, the traceback to the log
            log.exception("api %s failed", name)
            return JSONResponse({"error": i18n.t("history.error.internal", "en")}, status_code=500)
        return _answer(table, fmt, name)
    return handle


def _now() -> datetime:
    return datetime.now(timezone.utc)


def routes(store_getter: StoreGetter, cfg: config.Config, *,
           clock: Callable[[], datetime] = _now) -> list[Route]:
    """The API's routes; `store_getter()` gives the store at each call (None while starting)."""
    return [
        Route("/api/v1/utilisation", _handler(utilisation_table, "utilisation", store_getter, cfg, clock),
              methods=["GET"]),
        Route("/api/v1/tenants", _handler(tenants_table, "tenants", store_getter, cfg, clock), methods=["GET"]),
    ]
