"""Headless Chromium for the web inbox tests, and the web inbox on a thread.

Debian's ``chromium`` and ``chromium-driver`` (``scripts/setup --test``); the
tests that need them skip, saying so, when they are missing.  Chromium is
kept off the network: no background services, no proxy, and every host name
but loopback unresolvable.
"""

from __future__ import annotations

import pathlib
import queue
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest
import trio

from mta.testing import Inbox
from mta.testing.web import serve_web

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTEFACTS = pathlib.Path(__file__).resolve().parents[3] / ".cache" / "artefacts"

_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # root, and containers without user namespaces
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(path) is None:
            return f"{path} is missing (apt-get install {package}, or scripts/setup --test)"
    return None


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium WebDriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in _FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def web_inbox(inbox: Inbox) -> Iterator[str]:
    """``serve_web`` on a thread of its own; its base URL."""
    started: queue.Queue[tuple[trio.lowlevel.TrioToken, trio.CancelScope, int] | BaseException]
    started = queue.Queue()

    async def main() -> None:
        try:
            async with trio.open_nursery() as nursery:
                _, port = await nursery.start(serve_web, inbox, "127.0.0.1", 0)
                token = trio.lowlevel.current_trio_token()
                started.put((token, nursery.cancel_scope, port))
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    got = started.get(timeout=10)
    if isinstance(got, BaseException):
        thread.join()
        pytest.fail(f"the web inbox did not start: {got!r}")
    token, scope, port = got
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        token.run_sync_soon(scope.cancel)
        thread.join(timeout=10)
