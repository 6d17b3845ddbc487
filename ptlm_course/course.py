"""Facts about the course itself: where it lives and the set-up cell every notebook opens with."""
REPO_URL = "https://github.com/ptlm-course/ptlm-course"

# The first code cell of every notebook, character for character (tests/test_notebook_structure.py).
SETUP_CELL = f'''# Set-up (the same first cell in every notebook). On Colab or a fresh machine it installs the course
# package and its offline data packages from the repository; after `make lab` it installs nothing.
import importlib.util, subprocess, sys
COURSE_REPO = "{REPO_URL}"
if importlib.util.find_spec("ptlm_course") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"ptlm-course @ git+{{COURSE_REPO}}"], check=True)
from ptlm_course import setup_notebook
device = setup_notebook(seed=0)'''
