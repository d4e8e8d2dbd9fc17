"""Debian's headless Chromium, driven by Selenium, for the browser tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium and chromium-driver
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless flags that work in a container as root, with no network to reach.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a container's small /dev/shm crashes tabs
    "--window-size=1280,1400",
)
T = TypeVar("T")


@contextlib.contextmanager
def chromium(log: Path, profile: Path, *flags: str) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile), quit on exit; a missing
    binary fails the test, never skips it."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).is_file():
            pytest.fail(f"{binary} is missing: scripts/install-system-deps.sh installs it")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # given, so selenium-manager never downloads one
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(CHROMEDRIVER, log_output=str(log))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromium and the chromedriver process it started


def wait(driver: WebDriver, what: str, check: Callable[[WebDriver], T], timeout: float = 30) -> T:
    """check's first truthy result; on timeout, a failure that says what was awaited."""
    result: T = WebDriverWait(driver, timeout, poll_frequency=0.2).until(check, what)
    return result
