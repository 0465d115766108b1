"""Shared page plumbing: config, language, formatting, navigation.

`main` builds the session's `PageContext` (pages/context.py: config, store,
language, filters) and hands it to the pages; the database is reached only
through it.

No page shows a traceback: `main` runs the page, and pages run their
auto-refreshing fragments, through `guarded`, which turns any exception into a
plain message with the exception's words and logs the traceback on the server
(.streamlit/config.toml's client.showErrorDetails = "none" is the second line of
defence). Streamlit's own control flow (st.stop, st.rerun) passes through.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import pandas as pd
import streamlit as st

import config
import i18n
from pages import context
from queries import DatabaseUnavailable
from queries.scope import Scope

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def cfg() -> config.Config:
    return config.load()


def lang() -> str:
    return i18n.normalise(st.query_params.get("lang") or cfg().centre.default_language)


def t(key: str, **values: object) -> str:
    return i18n.t(key, lang(), **values)


def i18n_has(key: str) -> bool:
    return i18n.has(key)


def now() -> datetime:
    return datetime.now(timezone.utc)


def param_choice(name: str, options: list[str], default: str) -> str:
    """A query-parameter value restricted to `options` (so shared URLs can't inject)."""
    value = st.query_params.get(name)
    return value if value in options else default


def url_choice(label: str, name: str, options: list[str], default: str, *, key: str,
               format_func: Callable[[str], str]) -> str:
    """A segmented control whose choice lives in the URL's `name` parameter (restricted to
    `options`; left out of the URL while it is `default`), so the view can be shared."""
    current = param_choice(name, options, default)
    choice = st.segmented_control(label, options, default=current, key=key, format_func=format_func) or current
    set_param(name, choice, default)
    return choice


def url_select(where: Any, label: str, name: str, options: list[str], default: str, *, key: str,
               format_func: Callable[[str], str] = str, keep_default: bool = False) -> str:
    """A selectbox (in `where`: st, st.sidebar or a column) whose choice lives in the URL's `name`
    parameter (restricted to `options`; left out of the URL while it is `default`, unless
    `keep_default`, for choices whose default changes with the data, such as the first tenant)."""
    current = param_choice(name, options, default)
    choice = where.selectbox(label, options, index=options.index(current), key=key, format_func=format_func)
    set_param(name, choice, None if keep_default else default)
    return choice


def set_param(name: str, value: str | None, default: str | None = None) -> None:
    if value is None or value == default:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def missing(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def table_height(rows: int, max_rows: int | None = None) -> int:
    """Pixels for st.dataframe to show `rows` rows without empty ones; beyond max_rows it scrolls."""
    shown = rows if max_rows is None else min(rows, max_rows)
    return 38 + 35 * max(shown, 1)


def fmt_num(v: Any, digits: int = 0, unit: str = "") -> str:
    if missing(v):
        return "—"
    text = f"{float(v):,.{digits}f}"
    return f"{text} {unit}".rstrip()


def fmt_age(ts: object, at: datetime | None = None) -> str:
    if missing(ts):
        return t("common.never")
    at = at or now()
    secs = max(0, int((at - pd.Timestamp(ts).to_pydatetime()).total_seconds()))
    if secs < 90:
        return t("common.ago_s", n=secs)
    if secs < 90 * 60:
        return t("common.ago_m", n=secs // 60)
    if secs < 36 * 3600:
        return t("common.ago_h", n=secs // 3600)
    return t("common.ago_d", n=secs // 86400)


def fmt_time(ts: object) -> str:
    if missing(ts):
        return "—"
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def cluster_filter(ctx: context.PageContext) -> str | None:
    """Sidebar cluster picker, kept in the URL and in the context's filters; None for all clusters."""
    ids = [c.id for c in ctx.cfg.clusters]
    names = {c.id: c.name for c in ctx.cfg.clusters}
    options = ["all", *ids]
    labels = {"all": t("filter.all_clusters"), **{c: f"{names[c]} ({c})" for c in ids}}
    current = param_choice("cluster", options, "all")
    # format_func must not read session state: widgets are re-serialised outside the script
    choice = st.sidebar.selectbox(t("filter.cluster"), options, index=options.index(current),
                                  format_func=labels.__getitem__, key="cluster_filter")
    set_param("cluster", choice, "all")
    ctx.filters["cluster"] = None if choice == "all" else choice
    return ctx.filters["cluster"]


def language_switch() -> None:
    options = list(i18n.LANGUAGES)
    current = lang()
    choice = st.sidebar.selectbox(
        "Language / 语言", options, index=options.index(current),
        format_func=lambda code: i18n.LANGUAGES[code], key="language")
    set_param("lang", choice, None)
    if choice != current:
        st.rerun()


def show_error(exc: Exception) -> None:
    """A failure in plain words on the page; its traceback in the server log."""
    log.error("page failed", exc_info=exc)
    st.error(t("pages.error", error=f"{type(exc).__name__}: {exc}"), icon=":material/error:")


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """`fn` with any exception shown by `show_error` instead of a traceback."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:           # st.stop / st.rerun are BaseExceptions and pass
            show_error(exc)
    return run


@dataclass(frozen=True)
class NavPage:
    """A page in the navigation, and the roles that may open it (sign-in off: every page)."""

    script: str
    title_key: str
    icon: str
    url_path: str
    roles: tuple[str, ...]
    default: bool = False

    def visible(self, scope: Scope) -> bool:
        return scope.role is None or scope.role in self.roles


NAV: tuple[NavPage, ...] = (
    NavPage("pages/live.py", "nav.live", ":material/monitor_heart:", "live", ("noc", "manager", "admin"),
            default=True),
    NavPage("pages/utilisation.py", "nav.utilisation", ":material/insights:", "utilisation",
            ("manager", "planner", "admin", "tenant")),
    NavPage("pages/tenants.py", "nav.tenants", ":material/groups:", "tenants",
            ("manager", "planner", "admin", "tenant")),
    NavPage("pages/energy.py", "nav.energy", ":material/bolt:", "energy", ("manager", "planner", "admin")),
    NavPage("pages/billing.py", "nav.billing", ":material/receipt_long:", "billing", ("manager", "admin", "tenant")),
    NavPage("pages/capacity.py", "nav.capacity", ":material/trending_up:", "capacity", ("planner", "manager", "admin")),
    NavPage("pages/reports.py", "nav.reports", ":material/description:", "reports", ("manager", "admin", "tenant")),
    NavPage("pages/sources.py", "nav.sources", ":material/lan:", "sources", ("noc", "manager", "admin")),
    NavPage("pages/admin.py", "nav.admin", ":material/admin_panel_settings:", "admin", ("admin",)),
)


# ---- access (issue 15, docs/access.md) --------------------------------------------------------

_SIGNED_IN = "access_signed_in"          # session state: the sign-in this session has audited
_SEEN = "access_seen"                    # session state: the last run's time (the idle timeout)
_DENIED = "access_denied"                # session state: the pages this session was refused (audited once)
VIEW_AS = "view_as"                      # the demo switch's URL parameter


def role_label(scope: Scope) -> str:
    """"Manager", or "Tenant: Acme AI", in the reader's language."""
    if scope.role is None:
        return t("access.role.none")
    if scope.role == "tenant" and scope.tenant is not None:
        names = {x.id: x.name for x in cfg().tenants}
        return t("access.role.tenant_named", tenant=names.get(scope.tenant, scope.tenant))
    return t(f"access.role.{scope.role}")


@st.cache_resource(show_spinner=False)
def _audited_sign_ins() -> set[tuple[str, ...]]:
    """(subject, issued-at) of the sign-ins (and refused ones) audited by this server: a reload
    opens a new session with the same sign-in, which is not a new one."""
    return set()


def _audit(ctx: context.PageContext, scope: Scope | str | None, action: str, target: str | None = None,
           detail: str | dict | None = None) -> None:
    from queries import audit
    audit.record(ctx.store, scope, action, target, detail)


def _sign_out(ctx: context.PageContext, scope: Scope, action: str = "sign_out", detail: str | None = None) -> None:
    _audit(ctx, scope, action, "oidc", detail)
    st.session_state.pop(_SIGNED_IN, None)
    st.session_state.pop(_SEEN, None)
    st.logout()
    st.stop()


def _sign_in_page(ctx: context.PageContext) -> None:
    from config.access import PROVIDER
    st.title(ctx.cfg.centre.name)
    st.subheader(t("access.sign_in.title"))
    st.write(t("access.sign_in.text"))
    if st.button(t("access.sign_in.button"), type="primary", icon=":material/login:", key="sign_in"):
        st.login(PROVIDER)
    st.stop()


def session_scope(ctx: context.PageContext) -> Scope:
    """Who this session is: with sign-in on, the signed-in person's role and tenant from their
    ID token's claims (queries/access.py), signing out an idle or too old session; with it off,
    everything, or in the simulated centre the demo's "view as" choice. Stops the run on the
    sign-in page, or with a plain message for a person the claims give no role."""
    from queries import access
    centre = ctx.cfg
    if not centre.access.enabled:
        return view_as_switch(ctx) if access.view_as_available(centre) else access.EVERYTHING
    if not st.user.is_logged_in:
        _sign_in_page(ctx)
    claims = st.user.to_dict()
    found = access.scope_from_claims(centre.access, claims, [x.id for x in centre.tenants])
    if isinstance(found, access.Refusal):
        st.title(centre.centre.name)
        st.warning(t(found.key, **found.values), icon=":material/block:")
        key = ("refused", str(claims.get("sub")), str(claims.get("iat")))
        if key not in _audited_sign_ins():
            _audited_sign_ins().add(key)
            _audit(ctx, str(found.values.get("who")), "denied", "sign_in", i18n.t(found.key, "en", **found.values))
        if st.button(t("access.sign_out"), icon=":material/logout:", key="sign_out_refused"):
            st.logout()
        st.stop()
    scope = found
    now = datetime.now(timezone.utc).timestamp()
    issued = claims.get("iat")
    seen = st.session_state.get(_SEEN)
    if isinstance(issued, (int, float)) and now - issued > centre.access.max_session_h * 3600:
        _sign_out(ctx, scope, "session_timeout", f"signed in {(now - issued) / 3600:.1f} h ago")
    if isinstance(seen, float) and now - seen > centre.access.idle_timeout_min * 60:
        _sign_out(ctx, scope, "session_timeout", f"idle {(now - seen) / 60:.0f} min")
    st.session_state[_SEEN] = now
    sign_in = (str(claims.get("sub") or scope.who), str(issued))
    if st.session_state.get(_SIGNED_IN) != sign_in:
        st.session_state[_SIGNED_IN] = sign_in
        if sign_in not in _audited_sign_ins():
            _audited_sign_ins().add(sign_in)
            _audit(ctx, scope, "sign_in", "oidc")
    box = st.sidebar.container(border=True)
    box.caption(t("access.signed_in_as", who=scope.who or "", role=role_label(scope)))
    if box.button(t("access.sign_out"), icon=":material/logout:", key="sign_out"):
        _sign_out(ctx, scope)
    return scope


def end_if_expired(ctx: context.PageContext) -> None:
    """For auto-refreshing fragments, which rerun without `main` and are no one's activity: once
    the session is idle or its sign-in too old, rerun the whole app so the gate signs it out (a
    wall display stays up for `idle_timeout_min`, which a NOC may set up to a day)."""
    a = ctx.cfg.access
    if not a.enabled or not st.user.is_logged_in:
        return
    now = datetime.now(timezone.utc).timestamp()
    seen = st.session_state.get(_SEEN)
    issued = st.user.to_dict().get("iat")
    if (isinstance(seen, float) and now - seen > a.idle_timeout_min * 60) or (
            isinstance(issued, (int, float)) and now - issued > a.max_session_h * 3600):
        st.rerun(scope="app")


def view_as_switch(ctx: context.PageContext) -> Scope:
    """The simulated centre's demo switch (never with real sources or with sign-in on): show the
    pages as a role or a tenant sees them. Kept in the URL (`view_as`) so a demo view can be
    shared; changing it is audited."""
    from queries import access
    options = access.view_as_options(ctx.cfg)
    names = {x.id: x.name for x in ctx.cfg.tenants}

    labels = {"": t("access.view_as.everything")}
    for choice in options[1:]:
        tenant = choice.removeprefix("tenant:")
        labels[choice] = (t("access.role.tenant_named", tenant=names.get(tenant, tenant))
                          if choice.startswith("tenant:") else t(f"access.role.{choice}"))
    current = param_choice(VIEW_AS, options, "")
    box = st.sidebar.container(border=True)
    box.markdown(f"**:orange[{t('access.view_as.title')}]**")
    choice = box.selectbox(t("access.view_as.label"), options, index=options.index(current),
                           format_func=labels.__getitem__, key="view_as", help=t("access.view_as.help"))
    set_param(VIEW_AS, choice, "")
    if choice != st.session_state.get("access_view_as_audited", ""):
        st.session_state["access_view_as_audited"] = choice
        if choice:
            _audit(ctx, None, "view_as", choice)
    return access.view_as_scope(ctx.cfg, choice)


def access_banner(ctx: context.PageContext) -> None:
    """Above every page: sign-in off (everyone who opens it sees everything), or the demo view."""
    if ctx.cfg.access.enabled:
        return
    if ctx.scope.role is not None:
        st.warning(t("access.banner.view_as", role=role_label(ctx.scope)), icon=":material/visibility:")
    else:
        st.warning(t("access.banner.off"), icon=":material/lock_open:")


def denied_page(ctx: context.PageContext, title_key: str, url_path: str,
                roles: tuple[str, ...]) -> Callable[[], None]:
    """A page the scope's role may not open: a plain message in its place (audited once a session)."""
    def denied() -> None:
        st.title(t(title_key))
        st.warning(t("access.denied.page", page=t(title_key), role=role_label(ctx.scope),
                     roles=", ".join(t(f"access.role.{r}") for r in roles)), icon=":material/block:")
        refused = st.session_state.setdefault(_DENIED, set())
        if url_path not in refused:
            refused.add(url_path)
            _audit(ctx, ctx.scope, "denied", f"page:{url_path}", f"role {ctx.scope.role}")
    denied.__name__ = f"denied_{url_path}"
    return denied


def _default_index(shown: list[NavPage]) -> int:
    """The page "/" opens: NAV's default where the role may open it, else its first page."""
    for i, p in enumerate(shown):
        if p.default:
            return i
    return 0


def main() -> None:
    """Entry point of every session: page setup, sidebar, sign-in, navigation.

    Each page of NAV that exists is in the navigation: the scope's own as pages, the others
    hidden, as a plain message that the role may not open them (so a shared URL says why,
    instead of "page not found")."""
    try:
        centre = cfg()
    except config.ConfigError as exc:
        st.error(str(exc))
        st.stop()
    st.set_page_config(page_title=centre.centre.name, page_icon=":material/memory:", layout="wide")
    language_switch()
    try:
        ctx = context.build(centre)
    except DatabaseUnavailable as exc:     # owned by another process, damaged, unusable: its words say which
        st.error(t("pages.db_owned", error=str(exc)), icon=":material/database:")
        st.stop()
    ctx.lang = lang()
    ctx.scope = session_scope(ctx)    # may stop here: the sign-in page, a person without a role
    shown = [p for p in NAV if p.visible(ctx.scope)]
    default = _default_index(shown)
    pages = [st.Page(p.script, title=t(p.title_key), icon=p.icon, url_path=p.url_path, default=i == default)
             for i, p in enumerate(shown)]
    pages += [st.Page(denied_page(ctx, p.title_key, p.url_path, p.roles), title=t(p.title_key), icon=p.icon,
                      url_path=p.url_path, visibility="hidden") for p in NAV if p not in shown]
    nav = st.navigation(pages)
    st.sidebar.caption(centre.centre.name)
    if centre.simulated:
        st.sidebar.info(t("common.simulated_note"), icon=":material/science:")
    access_banner(ctx)
    guarded(nav.run)()
