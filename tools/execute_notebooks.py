"""Execute notebooks in place so their stored outputs are real: ``python tools/execute_notebooks.py NB...``.

Run with ``PTLM_BUDGET=full`` (``make notebooks``) for the outputs committed in notebooks/.
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def execute(path: Path, verbose: bool = False) -> float:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC      # so JupyterLab opens it without asking for a kernel
    start = time.perf_counter()

    def log_cell(cell, cell_index, **_):
        print(f"  {path.name} cell {cell_index} started at {time.perf_counter() - start:.0f} s", flush=True)

    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=log_cell if verbose else None)
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


if __name__ == "__main__":
    verbose = "--verbose" in sys.argv[1:]          # print each cell's start time (to find a slow or stuck cell)
    for name in [a for a in sys.argv[1:] if a != "--verbose"]:
        print(f"{name}: executed in {execute(Path(name), verbose):.0f} s", flush=True)
