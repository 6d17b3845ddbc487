"""Ends every process one hand-in starts, when the grader has no OS sandbox (see
``ptlm_course.machinery.grading``).

Run by the grader as ``python -I -S _grade_supervisor.py CONTROL_FD CLOSE_FDS -- COMMAND...``. It makes itself
a *child subreaper* (Linux ``prctl``), so every process the student's code starts, even one that detaches
with ``setsid`` or a double fork, stays its descendant. It starts COMMAND in a new session, waits until the
grader closes CONTROL_FD, then kills all its descendants and reaps them before exiting. Standard library only.
"""
import ctypes
import os
import select
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()          # after "pid (comm) "
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def sweep(timeout: float = 10.0) -> bool:
    """Kill and reap every descendant; True when none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(os.getpid())
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap()
        if not kids:
            return True
        time.sleep(0.01)
    return False


def main(argv: list[str]) -> int:
    control = int(argv[0])
    to_close = [int(fd) for fd in argv[1].split(",") if fd]
    command = argv[argv.index("--") + 1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return 3
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.close(control)
        os.execvp(command[0], command)
    for fd in to_close:
        os.close(fd)
    while True:                    # until the grader closes the control pipe (or dies: the pipe closes too)
        ready, _, _ = select.select([control], [], [], 0.5)
        reap()
        if ready and not os.read(control, 1024):
            break
    return 0 if sweep() else 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
