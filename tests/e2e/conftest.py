"""The browser tier: Debian's chromium driven by Playwright (the tracking server is in tests/conftest.py).

Screenshots go to reports/e2e/ (env PHANTOM_E2E_SHOTS to move them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless chromium from Debian (`make chromium`), driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make chromium` installs it (apt-get install chromium, as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the screenshots go (kept after the run: they are the test's artifacts)."""
    out = Path(os.environ.get("PHANTOM_E2E_SHOTS", REPO / "reports" / "e2e"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out
