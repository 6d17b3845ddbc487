"""Deprecated alias: exercise generation moved to :mod:`ptlm_course.machinery.exercises`.

    python -m ptlm_course.machinery.exercises solutions exercises      # the command to use

``python -m ptlm_course.exercises ...`` still works (with a warning) and so do imports from here, for now.
"""
import sys

from .machinery.exercises import (BEGIN, END, NBVAL_MARKERS, SolutionMarkerError, clear_solutions, generate,
                                  main, make_exercise, render)

__all__ = ["BEGIN", "END", "NBVAL_MARKERS", "SolutionMarkerError", "clear_solutions", "generate", "main",
           "make_exercise", "render"]

if __name__ == "__main__":
    print("`python -m ptlm_course.exercises` is deprecated: use `python -m ptlm_course.machinery.exercises`.",
          file=sys.stderr)
    sys.exit(main())
