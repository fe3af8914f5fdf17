"""Headless Chromium for the web page's tests and screenshots: Debian's chromium and
chromium-driver (`make test` installs them), driven by Selenium. Nothing is downloaded: the
browser's background traffic is switched off (this machine has no network) and Selenium is told
to stay offline rather than fetch a driver."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 900)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
]


def missing() -> str | None:
    """Why no browser can start here, or None."""
    lost = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    return (
        f"{' and '.join(lost)} not found: install Debian's chromium and chromium-driver (`make test` does)"
        if lost
        else None
    )


@contextmanager
def chromium():
    """A Selenium WebDriver on a fresh profile, closed and removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    why = missing()
    if why:
        raise RuntimeError(why)
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="reverie-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, timeout: float = 120):
    """What `condition(driver)` returns once it is truthy, polled every 50 ms."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def drop_file(driver, name: str, text: str) -> None:
    """What a drag and drop of a file onto the page's drop zone delivers: real DragEvents."""
    driver.execute_script(
        """
        const file = new File([arguments[0]], arguments[1], {type: 'text/tab-separated-values'});
        const data = new DataTransfer(); data.items.add(file);
        const zone = document.querySelector('#drop-zone');
        for (const kind of ['dragenter', 'dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(kind, {dataTransfer: data, bubbles: true, cancelable: true}));
    """,
        text,
        name,
    )
