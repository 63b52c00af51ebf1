"""Headless Debian Chromium driven by Selenium, for the tests of the report pages.

Uses the apt packages only (``chromium`` and ``chromium-driver``: /usr/bin/chromium and
/usr/bin/chromedriver); Selenium is never allowed to download a driver. Where either is
missing the test fails with the command that installs them (.ci/run installs them in CI).
The browser's console is recorded (``goog:loggingPrefs``), so ``driver.get_log("browser")``
returns its messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver"


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator:
    """A headless Chromium (a Selenium WebDriver), quit on leaving."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"the browser tests need Debian's Chromium and its driver ({', '.join(missing)} missing): "
                    f"{INSTALL}")  # fmt: skip
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail('the browser tests need Selenium: pip install -e ".[test]" (or pip install "selenium>=4.20")')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def severe_console_errors(driver) -> list[dict]:
    """The browser console's SEVERE messages since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
