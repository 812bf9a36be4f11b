"""A tab of Debian's headless chromium driven by Playwright, for the lab tests that look at HTML in a
real browser (skipped when Playwright or chromium is missing), with the URLs the page requested."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@contextmanager
def chromium_tab() -> Iterator[tuple[Any, list[str]]]:
    """A 1280x1000 tab and the list the URLs it requests are appended to; the browser is closed after."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            requests: list[str] = []
            tab.on("request", lambda r: requests.append(r.url))
            yield tab, requests
        finally:
            browser.close()
