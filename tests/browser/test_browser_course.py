"""`make lab` as a new student meets it: the URL it prints lands on notebook 00, the file browser shows the whole
course, and a lesson's exercise link opens the exercise, whose first check then runs and passes.

JupyterLab is started by tools/lab.py (what `make lab` runs) from a copy of the course's folders, in headless
Chromium (see browser_support.py). Notebooks run with PTLM_BUDGET=small.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from browser_support import free_port, skip_without_browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
LESSON, EXERCISE = "notebooks/03_attention.ipynb", "exercises/03_attention.ipynb"
TIMEOUT_MS = 180_000          # a page, or a kernel that imports torch, on a busy machine

pytestmark = pytest.mark.browser
skip_without_browser()


@pytest.fixture(scope="module")
def course_lab(tmp_path_factory):
    """tools/lab.py serving a copy of the course; yields the "Start here" URL it printed."""
    home = tmp_path_factory.mktemp("course")
    for folder in ("notebooks", "exercises", "solutions"):
        shutil.copytree(ROOT / folder, home / folder)
    (home / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "lab.py", home / "tools" / "lab.py")
    settings = home / "app-settings"
    settings.mkdir()
    overrides = json.loads((ROOT / "tools" / "jupyterlab" / "overrides.json").read_text())
    overrides["@jupyterlab/notebook-extension:tracker"] = {"windowingMode": "none"}   # render every cell
    (settings / "overrides.json").write_text(json.dumps(overrides))
    env = {**os.environ, "PTLM_BUDGET": "small", "OMP_NUM_THREADS": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(home / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "PTLM_CACHE_DIR": str(home / "cache")}
    port = free_port()
    command = [sys.executable, str(home / "tools" / "lab.py"), "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--LabApp.app_settings_dir={settings}", "--LabApp.expose_app_in_browser=True"]
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=home, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    printed: list[str] = []
    threading.Thread(target=lambda: printed.extend(server.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("Start here: ") for line in printed):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("tools/lab.py printed no 'Start here' line:\n" + "".join(printed)
                            + (home / "lab.log").read_text()[-3000:])
            time.sleep(0.2)
        starts = [line for line in printed if line.startswith("Start here: ")]
        assert len(starts) == 1, starts
        yield starts[0].removeprefix("Start here: ").strip()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    assert port_closes(port), "tools/lab.py stopped but left its JupyterLab server running"


def port_closes(port: int, timeout_s: float = 20.0) -> bool:
    """Whether nothing listens on 127.0.0.1:port any more, within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.5)
    return False


CURRENT_PATH = "() => window.jupyterapp?.shell.currentWidget?.context?.path ?? null"


def first_check(exercise: nbformat.NotebookNode) -> int:
    """Index of the exercise's first check cell (a cell that calls check_...)."""
    return next(i for i, c in enumerate(exercise.cells)
                if c.cell_type == "code" and re.match(r"check_\w+\(", c.source))


def test_make_lab_opens_the_course_and_a_lesson_links_to_its_exercise(course_lab, browser):
    url = course_lab
    assert re.search(r"/lab/tree/notebooks/00_setup_and_tour\.ipynb\?.*\btoken=\w+", url), url
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(f"() => ({CURRENT_PATH})() === 'notebooks/00_setup_and_tour.ipynb'",
                               timeout=TIMEOUT_MS)
        listing = page.locator(".jp-DirListing-content .jp-DirListing-itemText")
        listing.first.wait_for(timeout=TIMEOUT_MS)
        names = set(listing.all_inner_texts())
        assert {"notebooks", "exercises", "solutions"} <= names, f"the file browser shows {sorted(names)}"

        # The lesson, then its "Open exercises/03_attention.ipynb" link, clicked as a student would.
        page.evaluate(f"() => window.jupyterapp.commands.execute('docmanager:open', {{path: '{LESSON}'}})")
        page.wait_for_function(f"() => ({CURRENT_PATH})() === '{LESSON}'", timeout=TIMEOUT_MS)
        link = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown a[href*='/{EXERCISE}']")
        link.first.wait_for(timeout=TIMEOUT_MS)
        link.first.scroll_into_view_if_needed()
        link.first.click()
        page.wait_for_function(f"() => ({CURRENT_PATH})() === '{EXERCISE}'", timeout=TIMEOUT_MS)

        # Type the answer of the first task (taken from the solution), then run everything up to its check.
        exercise = nbformat.read(ROOT / EXERCISE, as_version=4)
        solution = nbformat.read(ROOT / "solutions" / Path(EXERCISE).name, as_version=4)
        check = first_check(exercise)
        task = check - 1
        assert "YOUR CODE HERE" in exercise.cells[task].source
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel"
                               "?.status === 'idle'", timeout=TIMEOUT_MS)
        page.evaluate("""([task, source, check]) => {
            const notebook = window.jupyterapp.shell.currentWidget.content;
            notebook.model.cells.get(task).sharedModel.setSource(source);
            notebook.activeCellIndex = check + 1;
            return window.jupyterapp.commands.execute('notebook:run-all-above');
        }""", [task, solution.cells[task].source, check])
        page.wait_for_function("""(check) => {
            const cell = window.jupyterapp.shell.currentWidget.content.model.cells.get(check);
            return cell.executionCount !== null && cell.outputs.length > 0;
        }""", arg=check, timeout=TIMEOUT_MS)
        outputs = page.evaluate("""(check) => window.jupyterapp.shell.currentWidget.content.model.cells
            .get(check).outputs.toJSON()""", check)
        text = json.dumps(outputs, ensure_ascii=False)
        assert "✅" in text and '"error"' not in text, f"the first check did not pass: {text[:2000]}"
        assert not errors, f"JavaScript errors on the page: {errors}"
    except Exception:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "course-lab-failure.png"))
        raise
    finally:
        try:
            page.evaluate("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.shutdown()")
        except Exception:
            pass
        page.close()
