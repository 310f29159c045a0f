"""The web inbox in a real browser: headless Chromium driven by Selenium.

The list updates live when a message arrives, a screenshot of it is kept
(``.cache/artefacts/web-inbox.png``), and a message's script never runs: not
in the list, not in the message page, not in the frame of its HTML part.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mta.testing import Inbox
from tests.testing.web.browser import ARTEFACTS, chromium, chromium_missing, web_inbox
from tests.testing.web.messages import HOSTILE_HTML, plain, rich

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

HOSTILE_SUBJECT = "<img src=x onerror=\"document.title='PWNED'\">"


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def served() -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    with web_inbox(inbox) as url:
        yield inbox, url


_ROWS = (
    "return Array.from(document.querySelectorAll('#messages tbody tr'),"
    " (row) => Array.from(row.cells, (cell) => cell.textContent))"
)


def _rows(driver: WebDriver) -> list[list[str]]:
    """The list's cells, read at one moment (the script may be rebuilding it)."""
    rows = driver.execute_script(_ROWS)
    assert isinstance(rows, list)
    return rows


def _artefacts(tmp_path: Path) -> Path:
    """``.cache/artefacts`` of the checkout, or ``tmp_path`` where that is not
    writable (an unprivileged user running a root's checkout)."""
    try:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
    except OSError:
        return tmp_path
    return ARTEFACTS if os.access(ARTEFACTS, os.W_OK) else tmp_path


def test_the_list_updates_live(
    driver: WebDriver, served: tuple[Inbox, str], tmp_path: Path
) -> None:
    inbox, url = served
    inbox.add(plain("1", "first"))
    driver.get(url + "/")
    assert driver.title == "mta inbox"
    assert [r[2] for r in _rows(driver)] == ["first"]
    # the page has subscribed once it has its first notice: wait for it
    WebDriverWait(driver, 5).until(
        lambda d: d.execute_script("return window.mtaInboxLive === true")
    )
    inbox.add(plain("2", "second", to="carol@example.test"))
    inbox.add(plain("3", HOSTILE_SUBJECT))
    WebDriverWait(driver, 5).until(lambda d: len(_rows(d)) == 3)
    rows = _rows(driver)
    assert [r[2] for r in rows] == [HOSTILE_SUBJECT, "second", "first"]
    assert rows[1][:2] == ["Alice <alice@example.test>", "carol@example.test"]
    assert driver.find_element(By.ID, "count").text == "3 messages"
    shot = _artefacts(tmp_path) / "web-inbox.png"
    assert driver.save_screenshot(str(shot))
    print(f"screenshot of the web inbox: {shot}")
    assert shot.stat().st_size > 1000
    time.sleep(0.3)  # an onerror would have fired by now
    assert driver.title == "mta inbox"
    inbox.clear()
    WebDriverWait(driver, 5).until(lambda d: _rows(d) == [])
    assert driver.find_element(By.ID, "count").text == "0 messages"


def test_a_message_page_shows_its_parts_and_runs_none_of_its_script(
    driver: WebDriver, served: tuple[Inbox, str]
) -> None:
    inbox, url = served
    inbox.add(rich("1", HOSTILE_HTML, subject=HOSTILE_SUBJECT))
    driver.get(url + "/messages/1")
    assert driver.find_element(By.TAG_NAME, "h1").text == HOSTILE_SUBJECT
    assert driver.find_element(By.ID, "text").text == "the text part"
    assert "report.pdf" in driver.find_element(By.ID, "attachments").text
    frame = driver.find_element(By.ID, "html")
    driver.switch_to.frame(frame)
    try:
        # the part is rendered (so its payloads had their chance) ...
        WebDriverWait(driver, 5).until(lambda d: d.find_element(By.TAG_NAME, "p").text == "hostile")
        time.sleep(0.3)
        # ... and none ran, in the frame or in the page
        assert driver.execute_script("return document.title") != "PWNED"
    finally:
        driver.switch_to.default_content()
    assert driver.title == HOSTILE_SUBJECT
    driver.get(url + "/messages/1/html")  # opened directly: still sandboxed
    WebDriverWait(driver, 5).until(lambda d: d.find_element(By.TAG_NAME, "p").text == "hostile")
    time.sleep(0.3)
    assert driver.title != "PWNED"
