"""Execute notebooks in place so their stored outputs are real: ``python tools/execute_notebooks.py NB...``.

Run with ``PTLM_BUDGET=full`` (``make notebooks``) for the outputs committed in notebooks/.

nbclient (which this uses; nbval in the tests does not) sometimes loses track of a cell that displays an
interactive widget with an Output area: it reports "Kernel died" although the kernel lives, or waits forever
for a reply that already came (measured here: about half the runs of notebook 10's attention explorer with
nbclient 0.11). So a cell that builds one of the course's widgets gets a short time limit, and a run that
fails that way starts again from the top, at most ``ATTEMPTS`` times; any other error stops at once.
"""
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

import ptlm_course.widgets

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
ATTEMPTS = 4
WIDGET_CELL_TIMEOUT = 120            # seconds: building a widget takes a few
CELL_TIMEOUT = 1800
# The training dashboard is left out: its cell trains for minutes (it draws the loss while the loop runs).
QUICK_WIDGETS = [name for name in ptlm_course.widgets.__all__ if name != "TrainingDashboard"]
WIDGET_CALL = re.compile(r"\b(" + "|".join(map(re.escape, QUICK_WIDGETS)) + r")\(")


def cell_timeout(cell) -> int:
    return WIDGET_CELL_TIMEOUT if WIDGET_CALL.search(cell.source) else CELL_TIMEOUT


def run_once(path: Path, verbose: bool) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC      # so JupyterLab opens it without asking for a kernel
    start = time.perf_counter()

    def log_cell(cell, cell_index, **_):
        print(f"  {path.name} cell {cell_index} started at {time.perf_counter() - start:.0f} s", flush=True)

    client = NotebookClient(nb, timeout_func=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=log_cell if verbose else None)
    client.execute()
    return nb, time.perf_counter() - start


def execute(path: Path, verbose: bool = False) -> float:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            nb, elapsed = run_once(path, verbose)
            break
        except (DeadKernelError, CellTimeoutError, AssertionError) as error:   # AssertionError: nbclient's cleanup
            if attempt == ATTEMPTS:                                              # after a lost kernel
                raise
            print(f"  {path.name}: attempt {attempt} failed ({type(error).__name__}); starting again", flush=True)
    nbformat.write(nb, path)
    return elapsed


if __name__ == "__main__":
    verbose = "--verbose" in sys.argv[1:]          # print each cell's start time (to find a slow or stuck cell)
    for name in [a for a in sys.argv[1:] if a != "--verbose"]:
        print(f"{name}: executed in {execute(Path(name), verbose):.0f} s", flush=True)
