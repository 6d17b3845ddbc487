"""Start JupyterLab on the whole course (`make lab`): notebooks/, exercises/ and solutions/ in the file browser,
notebook 00 open, and one "Start here: <url>" line to copy (on a remote machine, a container or WSL).

    python tools/lab.py                        # what `make lab` runs
    python tools/lab.py --no-browser --port=9000   # any other option goes to `jupyter lab`

JupyterLab's root is the repository root, and its landing page (`LabApp.default_url`) is notebook 00, so the
URL the server prints (and the one the browser opens) lands on notebook 00 rather than on the Launcher.
"""
from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import tempfile
import webbrowser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_NOTEBOOK = "notebooks/00_setup_and_tour.ipynb"
LANDING = f"/lab/tree/{START_NOTEBOOK}"
# The server prints its address as e.g. "http://localhost:8888/lab/tree/notebooks/00_...ipynb?token=ab12..."
URL = re.compile(r"(https?://\S+" + re.escape(LANDING) + r"\S*)")


def lab_command(extra: list[str]) -> list[str]:
    """The `jupyter lab` command line: repository root, landing on notebook 00."""
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={ROOT}",
               f"--LabApp.default_url={LANDING}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:       # containers often run as root
        command.append("--allow-root")
    return command + extra


def start_here(line: str) -> str | None:
    """The URL to print after "Start here:", if this log line holds the server's address.

    It adds ``file-browser-path=/``: JupyterLab opens notebook 00 and keeps its file browser at the
    repository root (notebooks/, exercises/, solutions/) instead of moving it into notebooks/."""
    match = URL.search(line)
    if not match:
        return None
    address, _, query = match.group(1).partition("?")
    return f"{address}?file-browser-path=/" + (f"&{query}" if query else "")


def open_browser(url: str) -> None:
    """Open ``url`` through a local redirect file, as Jupyter does, so the token is not on a command line."""
    page = Path(tempfile.mkdtemp(prefix="ptlm-lab-")) / "start.html"
    page.write_text(f'<meta http-equiv="refresh" content="0; url={html.escape(url)}">'
                    f'<a href="{html.escape(url)}">Start here</a>', encoding="utf-8")
    page.chmod(0o600)
    webbrowser.open(page.as_uri())


def main(argv: list[str] | None = None) -> int:
    if not (ROOT / START_NOTEBOOK).exists():
        print(f"Expected the course's first notebook at {ROOT / START_NOTEBOOK}; is this a full checkout?",
              file=sys.stderr)
        return 1
    extra = sys.argv[1:] if argv is None else argv
    browse = not any(a in ("--no-browser", "--ServerApp.open_browser=False") for a in extra)
    # We open the browser ourselves, on the "Start here" URL (the server would open notebooks/ in its file browser).
    server = subprocess.Popen(lab_command(extra + ["--no-browser"]), cwd=ROOT,
                              stderr=subprocess.PIPE, text=True, bufsize=1)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())   # stopped from outside: stop the server too
    printed = False
    while True:
        try:
            for line in server.stderr:                     # pass the server's log through, unchanged
                sys.stderr.write(line)
                url = None if printed else start_here(line)
                if url:                                    # the first of the addresses it prints
                    print(f"\nStart here: {url}\n", flush=True)
                    printed = True
                    if browse:
                        open_browser(url)
            return server.wait()
        except KeyboardInterrupt:                          # Ctrl-C reaches the server too: it asks, then stops
            continue


if __name__ == "__main__":
    sys.exit(main())
