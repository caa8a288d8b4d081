"""Debian packages the tests need, installed by apt-get one at a time: the browser tests' Chromium
begins as the suite starts (tests/browser.py), PostgreSQL's at its first test, and each worker of
a parallel run (`make test`) may ask for either; a second apt-get would find dpkg's lock held."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from renkei.state import file_locked

LOCK = Path(tempfile.gettempdir()) / "renkei-tests-apt.lock"


def installed(packages: tuple[str, ...], present: Callable[[], bool], *,
              recommends: bool = True) -> None:
    """Install `packages` unless `present()`, asked again once this process holds the lock (the
    one that held it may have installed them)."""
    if present():
        return
    with file_locked(LOCK):
        if present():
            return
        _apt("update", "-qq")
        _apt("install", "-y", "-qq", *(() if recommends else ("--no-install-recommends",)),
             *packages)


def _apt(*args: str) -> None:
    done = subprocess.run(["apt-get", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode:
        raise RuntimeError(f"apt-get {' '.join(args)} failed ({done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
