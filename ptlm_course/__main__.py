"""Command-line tools: ``python -m ptlm_course doctor`` and ``python -m ptlm_course grade SUBMISSIONS...``."""
from __future__ import annotations

import sys

USAGE = """usage: python -m ptlm_course COMMAND [options]

commands:
  doctor                  check this environment (Python, torch, device, data, widgets, cache) and say what to fix
  grade SUBMISSIONS...    run students' exercise notebooks and collect every check (CSV + summary)

Run `python -m ptlm_course COMMAND --help` for a command's options."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "doctor":
        from .machinery.doctor import main as doctor_main
        return doctor_main(rest)
    if command == "grade":
        from .machinery.grading import main as grade_main
        return grade_main(rest)
    print(f"Unknown command {command!r}: expected 'doctor' or 'grade'.\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
