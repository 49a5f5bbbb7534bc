"""For the viewer's tests and benchmark: `mmat view` in a subprocess, and a real browser (the system's
headless Chromium through selenium).

    proc, url = start_view(["mmat-1m", "--config", "orr"])   # terminate() it when done
    driver = chromium(tmp_path)                              # quit() it when done
    wait_js(driver, "return document.body.dataset.ready")

Chromium and chromedriver come from the system packages (`apt-get install chromium chromium-driver`;
`.ci/run` installs them). Without them the browser tests skip with that line, unless
`MMAT_REQUIRE_BROWSER=1` (set by `.ci/run`) turns the skip into a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
INSTALL = "apt-get install chromium chromium-driver (and pip install selenium, the `test` extra)"


def binaries() -> tuple[Optional[str], Optional[str]]:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    return browser, shutil.which("chromedriver")


def missing_reason() -> Optional[str]:
    browser, driver = binaries()
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed: {INSTALL}"
    if not browser or not driver:
        return f"headless Chromium and chromedriver are needed: {INSTALL}"
    return None


def require_browser() -> None:
    import pytest

    reason = missing_reason()
    if reason:
        if os.environ.get("MMAT_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)


def chromium(profile_parent: Path | str | None = None, width: int = 1400, height: int = 1000):
    """A headless Chromium with a fresh profile (the network stays closed: no background traffic)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=profile_parent)}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_js(driver, script: str, timeout: float = 60, *args: Any) -> Any:
    """Run `script` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never satisfied: {script}")
        time.sleep(0.05)


def start_view(args: list[str], env: Optional[dict] = None, stop_after: int = 1200) -> tuple[subprocess.Popen, str]:
    """`mmat view ARGS` on a free port (it stops by itself after `stop_after` s); the process and its URL."""
    env = env or {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "mmat_cli", "view", *map(str, args), "--port", "0", "--no-open",
                             "--stop-after", str(stop_after)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"mmat view did not start: {line}{proc.stderr.read()[-3000:]}")
    return proc, line.split("mmat view: ", 1)[1].split()[0]


# -- the fixtures the viewer's test modules share (each module keeps its own scope and data) ----------
def served_view(args: list[str]):
    """A generator fixture body: `mmat view ARGS` running, its URL yielded, the server stopped after."""
    proc, url = start_view(args)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def headless_browser(tmp_path_factory):
    """A generator fixture body: a headless Chromium (skips, or fails under MMAT_REQUIRE_BROWSER, when
    there is none), quit after."""
    require_browser()
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def screenshot_folder(tmp_path_factory) -> Path:
    """$MMAT_SCREENSHOT_DIR, else a fresh tmp folder: where the browser tests leave their screenshots."""
    folder = Path(os.environ.get("MMAT_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
