"""The browser fixture the browser tests share (helpers in browser_support.py)."""
import pytest
from browser_support import CHROMIUM, sync_playwright


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, one for the whole test session."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()
