"""The course as a person uses it: JupyterLab in headless Chromium, every notebook with widgets run from the top
down to its last widget (nbval runs every cell, outside the browser), no error output, each widget's control moved
and its view changed. Screenshots go to test-artifacts/screenshots/.

Needs Playwright (``pip install playwright``, in the dev extras) and Debian's Chromium (``apt-get install
chromium``: /usr/bin/chromium, or set PTLM_CHROMIUM); Playwright's own browser download is never used.
Skipped, saying why, when either is missing. Notebooks run with PTLM_BUDGET=small.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_support import free_port, skip_without_browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = Path(os.environ.get("PTLM_BROWSER_NOTEBOOKS", ROOT / "notebooks"))   # another folder: try your own
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
KERNEL_START_TIMEOUT_S = 180     # the page, then a kernel that imports torch: slow on a busy machine
NOTEBOOK_TIMEOUT_S = int(os.environ.get("PTLM_BROWSER_TIMEOUT", 300))   # one notebook, small budget, slow machine

pytestmark = pytest.mark.browser

skip_without_browser()


def widget_notebooks() -> list[str]:
    """The lesson notebooks that show course widgets."""
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")
                  if "ptlm_course.widgets" in p.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a copy of notebooks/, with the course's settings overrides."""
    home = tmp_path_factory.mktemp("lab")
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)            # only this run's screenshots
    shutil.copytree(NOTEBOOKS, home / "notebooks")
    settings = home / "app-settings"
    settings.mkdir()
    overrides = json.loads((ROOT / "tools" / "jupyterlab" / "overrides.json").read_text())   # the course's
    overrides["@jupyterlab/notebook-extension:tracker"] = {"windowingMode": "none"}   # render every cell
    (settings / "overrides.json").write_text(json.dumps(overrides))
    port, token = free_port(), os.urandom(16).hex()
    env = {**os.environ, "PTLM_BUDGET": "small",
           "JUPYTERLAB_SETTINGS_DIR": str(home / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "PTLM_CACHE_DIR": str(home / "cache")}
    env.pop("PTLM_WIDGETS", None)
    env.setdefault("OMP_NUM_THREADS", "1")    # tiny models: one thread is as fast, and a busy CI machine stays usable
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={home}", f"--LabApp.app_settings_dir={settings}",
               "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (home / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, home
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# What the cells' outputs hold, read from JupyterLab's own notebook model.
READ_NOTEBOOK = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  const result = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    result.push({index: i, count: cell.executionCount, outputs: cell.outputs.toJSON()});
  }
  return {status: panel.sessionContext.session?.kernel?.status ?? 'none', cells: result};
}"""


def last_widget_cell(notebook: str) -> int | None:
    """The index of the last cell that calls a widget the notebook imports from ptlm_course.widgets (None: none)."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells]
    names = {name.strip() for source in sources
             for imported in re.findall(r"^from ptlm_course\.widgets import \(?([^)\n]+)", source, re.M)
             for name in imported.split(",") if name.strip()}
    calls = [i for i, (cell, source) in enumerate(zip(cells, sources)) if cell["cell_type"] == "code"
             and any(re.search(rf"\b{re.escape(name)}\(", source) for name in names)]
    return max(calls) if calls else None


def run_all(page, notebook: str, live_steps: set) -> list[dict]:
    """Run the cells down to the last one that shows a widget through JupyterLab's own commands (all of them if
    that is the last cell) and wait until they have run.

    Meanwhile, collect into ``live_steps`` the steps a training dashboard shows while training runs."""
    try:
        ready = ("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                 " && window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel")
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        deadline = time.monotonic() + KERNEL_START_TIMEOUT_S
        while not page.evaluate(ready):                       # a notebook without kernel metadata asks which
            if dialog.count():                                # kernel to use: pick the default, as a person would
                dialog.locator("button.jp-mod-accept").click()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel after {KERNEL_START_TIMEOUT_S} s")
            time.sleep(0.5)
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                               " === 'idle'", timeout=KERNEL_START_TIMEOUT_S * 1000)
    except Exception:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{Path(notebook).stem}-no-kernel.png"))
        raise
    last = last_widget_cell(notebook)
    n_cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.cells.length")
    if last is None or last == n_cells - 1:
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    else:                                                     # select the cell after it, run everything above
        page.evaluate(f"""() => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = {last + 1};
                                  window.jupyterapp.commands.execute('notebook:run-all-above'); }}""")
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S
    dashboards = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .ptlm-training-dashboard .widget-html")
    while True:
        for i in range(dashboards.count()):
            live_steps.update(int(n) for n in re.findall(r"step (\d+)/", dashboards.nth(i).inner_text()))
        state = page.evaluate(READ_NOTEBOOK)
        cells = state["cells"]
        errors = [c for c in cells if any(o.get("output_type") == "error" for o in c["outputs"])]
        if errors:
            return cells                                        # run-all stops at an error: report it
        wanted = [c for c in cells if last is None or c["index"] <= last]
        if wanted and all(c["count"] for c in wanted) and state["status"] == "idle":
            return cells
        if time.monotonic() > deadline:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{Path(notebook).stem}-timeout.png"))
            pytest.fail(f"{notebook}: not finished after {NOTEBOOK_TIMEOUT_S} s "
                        f"({sum(bool(c['count']) for c in wanted)}/{len(wanted)} cells ran)")
        time.sleep(0.5)


def shot(element, name: str) -> bytes:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    element.scroll_into_view_if_needed()
    return element.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def wait_changed(element, before: bytes, what: str, timeout_s: float = 30) -> bytes:
    """Screenshots of ``element`` until it differs from ``before`` (the kernel answers asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        after = element.screenshot()
        if after != before:
            while True:                                         # let the redraw finish: two equal screenshots
                time.sleep(1.0)
                settled = element.screenshot()
                if settled == after or time.monotonic() > deadline:
                    return settled
                after = settled
    pytest.fail(f"{what}: the view did not change within {timeout_s:.0f} s")


def move_slider(widget, label: str) -> None:
    """Move the slider whose description is ``label`` one step right with the keyboard, as a person could."""
    slider = widget.locator(".widget-slider", has=widget.page.get_by_text(label, exact=True))
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")


# How to interact with each course widget (found by its CSS class), and how the view should react.
def poke_attention_explorer(widget):
    widget.get_by_text("causal mask", exact=True).click()           # the checkbox's label


def poke_masking_explorer(widget):
    widget.get_by_role("button", name="NotNext").click()


def poke_model_attention_explorer(widget):
    token = widget.locator(".widget-dropdown", has=widget.page.get_by_text("token", exact=True))
    token.locator("select").select_option(index=2)                # select a token: its row and lines light up


def poke_sampling_playground(widget):
    move_slider(widget, "temperature")


def poke_training_dashboard(widget):
    return None                                                    # nothing to move: it must show a finished plot


POKES = {"attention-explorer": poke_attention_explorer, "masking-explorer": poke_masking_explorer,
         "model-attention-explorer": poke_model_attention_explorer, "sampling-playground": poke_sampling_playground,
         "training-dashboard": poke_training_dashboard}


@pytest.mark.parametrize("notebook", widget_notebooks())
def test_notebook_widgets_in_jupyterlab(lab, browser, notebook):
    base, token, _home = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    messages = []
    page.on("pageerror", lambda error: messages.append(str(error)))
    try:
        workspace = Path(notebook).stem                       # one fresh workspace per notebook: no other tabs
        page.goto(f"{base}/lab/workspaces/{workspace}/tree/notebooks/{notebook}?reset&token={token}",
                  wait_until="domcontentloaded")
        live_steps: set[int] = set()
        cells = run_all(page, notebook, live_steps)
        errors = [(c["index"], o.get("ename"), o.get("evalue")) for c in cells for o in c["outputs"]
                  if o.get("output_type") == "error"]
        assert not errors, f"{notebook}: cells raised {errors}"
        popups = page.locator(".Toastify__toast", has_text=re.compile("news|update", re.I))
        assert not popups.count(), f"a news/update pop-up covers the notebook: {popups.first.inner_text()}"
        texts = json.dumps([o for c in cells for o in c["outputs"]])
        assert "Error displaying widget" not in texts

        widgets = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .ptlm-widget")
        widgets.first.wait_for(timeout=30_000)
        kinds = []
        for i in range(widgets.count()):
            widget = widgets.nth(i)
            kind = next(k for k in re.findall(r"ptlm-([a-z-]+)", widget.get_attribute("class") or "")
                        if k != "widget")
            assert kind in POKES, f"{notebook}: no browser interaction written for the {kind} widget"
            name = f"{Path(notebook).stem}-{kind}-{i}"
            widget.locator("img").first.wait_for(timeout=30_000) if widget.locator("img").count() else None
            before = shot(widget, name + "-before")
            if kind == "training-dashboard":
                assert widget.locator("img").count() == 1, "the dashboard shows no loss plot"
                final = re.search(r"step (\d+)/\1", widget.inner_text())
                assert final, "the dashboard did not reach the last step"
                assert any(step < int(final.group(1)) for step in live_steps), (
                    f"the dashboard was not updated while training (steps seen: {sorted(live_steps)})")
            else:
                POKES[kind](widget)
                after = wait_changed(widget, before, f"{notebook}: {kind}")
                (SCREENSHOTS / f"{name}-after.png").write_bytes(after)
            kinds.append(kind)
        assert kinds, f"{notebook} imports ptlm_course.widgets but shows no widget"
        assert not messages, f"JavaScript errors on the page: {messages}"
    finally:
        try:                                                  # free the kernel's memory and CPU for the next one
            page.evaluate("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.shutdown()")
        except Exception:
            pass
        page.close()
