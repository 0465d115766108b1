"""Screenshot every page of a running dashboard in Debian's headless chromium.

    .venv/bin/python scripts/screenshots.py http://127.0.0.1:8501 [--out artifacts/screenshots]

For looking at what the pages show (both languages, each heatmap metric, a
drill-down); the browser test saves the same kind of pictures on every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWS = {
    "live-en": ("/?lang=en", "GPUs owned"),
    "live-zh": ("/?lang=zh-CN", "GPU 总数"),
    "live-temp-train": ("/?metric=temp&cluster=train-a", "GPUs owned"),
    "live-power-host": ("/?metric=power&host=trn-a-003", "GPUs owned"),
    "sources-en": ("/sources?lang=en", "Targets"),
    "sources-zh": ("/sources?lang=zh-CN", "目标数"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("--out", default="artifacts/screenshots")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        for name, (path, marker) in VIEWS.items():
            page = browser.new_page(viewport={"width": 1600, "height": 2300})
            page.goto(args.base.rstrip("/") + path, wait_until="domcontentloaded")
            page.get_by_text(marker).first.wait_for(timeout=60_000)
            page.wait_for_timeout(2500)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(out / f"{name}.png")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
