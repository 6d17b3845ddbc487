"""Execute notebooks in place so their stored outputs are real: ``python tools/execute_notebooks.py NB...``.

Run with ``PTLM_BUDGET=full`` (``make notebooks``) for the outputs committed in notebooks/.
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC      # so JupyterLab opens it without asking for a kernel
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: executed in {execute(Path(name)):.0f} s", flush=True)
