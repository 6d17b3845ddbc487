"""Helpers the browser tests share: Debian's Chromium driven by Playwright (never Playwright's own download)."""
from __future__ import annotations

import os
import socket

import pytest

CHROMIUM = os.environ.get("PTLM_CHROMIUM", "/usr/bin/chromium")

try:
    from playwright.sync_api import sync_playwright
except ImportError:               # pragma: no cover - depends on the machine
    sync_playwright = None


def skip_without_browser() -> None:
    """Skip the calling test module, saying why, when Playwright or Chromium is missing."""
    if sync_playwright is None:
        pytest.skip("Playwright is not installed (pip install playwright; it is in the dev extras)",
                    allow_module_level=True)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian/Ubuntu: apt-get install -y chromium; or set PTLM_CHROMIUM)",
                    allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
