"""The machinery: code that serves the notebooks, CI and instructors, not the lessons.

The lessons never need to read anything here; it keeps the course running:

    doctor.py             ``python -m ptlm_course doctor``: is this environment ready? what to fix
    grading.py            ``python -m ptlm_course grade``: runs students' exercise notebooks, collects every check
    _grade_runner.py      the student's side of ``grade`` (runs one hand-in inside the sandbox)
    _grade_supervisor.py  ends every process a hand-in started, when there is no OS sandbox
    exercises.py          ``python -m ptlm_course.machinery.exercises solutions exercises``: exercises/ from solutions/

The widgets (``ptlm_course.widgets``) and the checks (``ptlm_course.checks``) are machinery too, in their own
folders because the notebooks import them by name.
"""
