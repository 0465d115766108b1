"""The billing routes, in the history routes' style (api/history.py, docs/billing.md):

- `/api/v1/bills?month=YYYY-MM[&tenant=][&lines=true][&format=csv]`: the month's bill per tenant
  (gross, each programme's subsidy, adjustments, net, status, difference since issue), or with
  `lines=true` every line item;
- `/api/v1/vouchers?period=YYYY|YYYY-MM[&programme=][&format=csv]`: the voucher reconciliation.

Both answer within the caller's scope: a tenant's token gets its own bill whatever `tenant` says,
and no programme budget figures.
"""

from __future__ import annotations

from queries import billing

ROUTES = [
    ("/api/v1/bills", "bills", billing.api_bills),
    ("/api/v1/vouchers", "vouchers", billing.api_vouchers),
]
