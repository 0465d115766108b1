"""Administration: the audit trail (read, filter, download) and the API's bearer tokens (make one
for a person or a service, scoped to a role or a tenant; revoke one), and how sign-in is set up.

For admins (pages/ui.py NAV), and for everyone while sign-in is off (then the dashboard serves
this machine only). The page checks the role itself too: the navigation hides it, but making a
token is the one thing here that grants access. A new token's text is shown once, right after
it is made; only its hash is stored (queries/tokens.py).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import streamlit as st

from pages import context, ui
from pages.context import PageContext
from queries import audit, measures, tokens
from queries.history import HistoryTable
from queries.scope import ROLES

NEW_TOKEN = "admin_new_token"          # session state: (token id, text) of the token just made


def _csv(table: HistoryTable) -> bytes:
    """The table's CSV; its header alone when it has no rows (HistoryTable.to_csv cannot convert
    an empty time column yet)."""
    if table.rows.empty:
        return (",".join(c.name for c in table.columns) + "\n").encode()
    return table.to_csv().encode()


def _zone(ctx: PageContext) -> str:
    return measures.site_timezone(ctx.cfg, None)


def audit_section(ctx: PageContext) -> None:
    t = ctx.t
    st.subheader(t("access.admin.audit"))
    tz = _zone(ctx)
    today = datetime.now(ZoneInfo(tz)).date()
    cols = st.columns([1, 1, 1, 1])
    day_from = cols[0].date_input(t("access.admin.from"), today - timedelta(days=6), key="audit_from")
    day_to = cols[1].date_input(t("access.admin.to"), today, key="audit_to")
    actions = ["all", *audit.ACTIONS]
    action = cols[2].selectbox(t("access.audit.col.action"), actions, key="audit_action",
                               format_func={"all": t("access.admin.all_actions"),
                                            **{a: audit.action_label(a, ctx.lang) for a in audit.ACTIONS}}.__getitem__)
    who = cols[3].text_input(t("access.audit.col.who"), key="audit_who").strip() or None
    start = datetime.combine(day_from, time(0), ZoneInfo(tz)).astimezone(timezone.utc)
    end = datetime.combine(day_to + timedelta(days=1), time(0), ZoneInfo(tz)).astimezone(timezone.utc)
    table = audit.table(ctx.store, start=start, end=end, action=None if action == "all" else action, who=who, tz=tz)
    shown = table.for_people(ctx.lang)
    column = t("access.audit.col.action")
    shown[column] = [audit.action_label(a, ctx.lang) for a in table.rows["action"]]
    st.caption(t("access.admin.audit_rows", n=len(shown), max=audit.MAX_ROWS))
    st.dataframe(shown, hide_index=True, width="stretch", height=ui.table_height(len(shown), 15))
    st.download_button(t("history.download_csv"), _csv(table), file_name="audit.csv", mime="text/csv",
                       key="csv_audit", icon=":material/download:")


def tokens_section(ctx: PageContext) -> None:
    t = ctx.t
    st.subheader(t("access.admin.tokens"))
    st.caption(t("access.admin.tokens_help"))
    made = st.session_state.get(NEW_TOKEN)
    if made:
        st.success(t("access.admin.token_made", token_id=made[0]), icon=":material/key:")
        st.code(made[1], language=None)
    tenant_ids = [x.id for x in ctx.cfg.tenants]
    names = {x.id: x.name for x in ctx.cfg.tenants}
    with st.form("new_token", clear_on_submit=True, border=True):
        st.markdown(f"**{t('access.admin.new_token')}**")
        cols = st.columns([2, 1, 2])
        name = cols[0].text_input(t("access.tokens.col.name"), key="token_name",
                                  placeholder=t("access.admin.name_hint"))
        role = cols[1].selectbox(t("access.tokens.col.role"), list(ROLES), key="token_role",
                                 format_func={r: t(f"access.role.{r}") for r in ROLES}.__getitem__)
        tenant = cols[2].selectbox(t("access.admin.tenant_for_tenant_role"), ["", *tenant_ids], key="token_tenant",
                                   format_func={"": "—", **{k: f"{v} ({k})" for k, v in names.items()}}.__getitem__)
        if st.form_submit_button(t("access.admin.make"), type="primary", icon=":material/add:"):
            try:
                token_id, text = tokens.create(ctx.store, name=name, role=role, tenant=tenant or None, by=ctx.scope,
                                               tenants=tenant_ids)
            except tokens.TokenError as exc:
                st.warning(t("access.admin.token_refused", error=str(exc)), icon=":material/warning:")
            else:
                st.session_state[NEW_TOKEN] = (token_id, text)
                st.rerun()
    table = tokens.table(ctx.store, tz=_zone(ctx))
    if table.rows.empty:
        st.caption(t("access.admin.no_tokens"))
        return
    st.dataframe(table.for_people(ctx.lang), hide_index=True, width="stretch",
                 height=ui.table_height(len(table.rows), 10))
    st.download_button(t("history.download_csv"), _csv(table), file_name="api-tokens.csv",
                       mime="text/csv", key="csv_tokens", icon=":material/download:")
    valid = [r for r in table.records() if r["revoked_at"] is None]
    if not valid:
        return
    labels = {r["token_id"]: f"{r['token_id']} · {r['name']} · {t('access.role.' + r['role'])}" for r in valid}
    cols = st.columns([3, 1])
    which = cols[0].selectbox(t("access.admin.revoke_which"), list(labels), key="token_revoke",
                              format_func=labels.__getitem__)
    if cols[1].button(t("access.admin.revoke"), icon=":material/block:", key="token_revoke_button"):
        tokens.revoke(ctx.store, which, by=ctx.scope)
        st.session_state.pop(NEW_TOKEN, None)
        st.rerun()


def sign_in_section(ctx: PageContext) -> None:
    t = ctx.t
    st.subheader(t("access.admin.sign_in"))
    a = ctx.cfg.access
    if not a.enabled:
        st.info(t("access.admin.sign_in_off"), icon=":material/lock_open:")
        return
    assert a.oidc is not None            # config/access.py check: sign_in = "oidc" needs [oidc]
    st.markdown(t("access.admin.sign_in_on", provider=a.oidc.server_metadata_url, client=a.oidc.client_id,
                  claim=a.claims.groups, idle=f"{a.idle_timeout_min:g}", hours=f"{a.max_session_h:g}"))


def page(ctx: PageContext) -> None:
    st.title(ctx.t("access.admin.title"))
    if ctx.scope.role not in (None, "admin"):
        st.warning(ctx.t("access.denied.page", page=ctx.t("access.admin.title"), role=ui.role_label(ctx.scope),
                         roles=ctx.t("access.role.admin")), icon=":material/block:")
        return
    if ctx.store.read_only:
        st.info(ctx.t("access.admin.read_only"), icon=":material/database:")
    ui.guarded(sign_in_section)(ctx)
    st.divider()
    ui.guarded(tokens_section)(ctx)
    st.divider()
    ui.guarded(audit_section)(ctx)


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
