"""What access costs an API call: /api/v1/tenants on the tiny seeded history (tests/helpers.py),
answered to a local caller without a token (sign-in off) and with a bearer token (the token's
lookup, its last-use update and the token_use audit row), N calls each, median and p95.

    .venv/bin/python benchmarks/bench_access.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from starlette.applications import Starlette  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import api  # noqa: E402
import config  # noqa: E402
from helpers import history_centre, seed_history  # noqa: E402
from queries import Store, tokens  # noqa: E402

RANGE = {"from": "2026-11-20T08:00:00+08:00", "to": "2026-11-20T03:00:00Z"}


def timed(client: TestClient, n: int, headers: dict[str, str]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get("/api/v1/tenants", params=RANGE, headers=headers)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return out


def main(n: int) -> None:
    cfg = config.from_dict(history_centre())
    store = Store(":memory:")
    seed_history(store)
    app = Starlette(routes=api.routes(lambda: store, cfg, require_scope=True),
                    middleware=api.middleware(lambda: store, cfg))
    client = TestClient(app, client=("127.0.0.1", 50000))
    _, token = tokens.create(store, name="bench", role="manager", by="bench")
    timed(client, 20, {})                                    # warm-up
    for label, headers in (("local caller, no token", {}), ("bearer token", {"Authorization": f"Bearer {token}"})):
        s = sorted(timed(client, n, headers))
        print(f"{label:24s} median {statistics.median(s) * 1000:6.2f} ms   p95 {s[int(0.95 * (n - 1))] * 1000:6.2f} ms")
    with store.cursor() as cur:
        (used,) = cur.execute("SELECT count(*) FROM audit_log WHERE action = 'token_use'").fetchall()[0]
    print("audit rows written:", used)
    store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
