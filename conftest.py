"""Pytest set-up shared by unit tests and nbval notebook runs."""
import os

# Notebooks and tests run with the small training budget unless told otherwise; the kernels that
# nbval starts inherit this environment.
os.environ.setdefault("PTLM_BUDGET", "small")
