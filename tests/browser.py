"""Browser-test set-up: Debian's Chromium (installed if missing) driven by Playwright, and a
card login through the simulated card reader as a person would do it."""

from __future__ import annotations

import functools
import shutil
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from playwright.async_api import Page

from tests import debian

CHROMIUM = "/usr/bin/chromium"
PACKAGES = ("chromium", "fonts-ipafont-gothic")  # the browser, and a font for Japanese
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "results" / "screenshots"


def _has_japanese_font() -> bool:
    found = subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def ensure_chromium() -> str:
    """Debian's chromium (never Playwright's own download), installed once if missing."""
    debian.installed(PACKAGES, lambda: Path(CHROMIUM).exists() and shutil.which("fc-list")
                     is not None and _has_japanese_font())
    return CHROMIUM


@functools.cache
def chromium_installing() -> Future[str]:
    """ensure_chromium begun once, in a thread of its own: on a fresh machine its apt-get (~20 s)
    goes on while the suite's broker starts and its first tests run (conftest begins it when the
    browser tests are collected)."""
    return ThreadPoolExecutor(1, thread_name_prefix="chromium").submit(ensure_chromium)


async def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def at_reader(page: Page, portal: str, realm: str = "resident") -> None:
    """From the portal's login page to the card reader's PIN page."""
    await page.goto(f"{portal}/login?as={realm}")
    await page.click("#card-login")
    await page.wait_for_selector("#pin")


async def enter_pin(page: Page, serial: str, pin: str) -> None:
    """On the reader: choose the card, type the PIN, sign."""
    await page.select_option("#card", serial)
    await page.fill("#pin", pin)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("networkidle")


async def card_login(page: Page, portal: str, serial: str, pin: str,
                     realm: str = "resident") -> None:
    await at_reader(page, portal, realm)
    await enter_pin(page, serial, pin)
