"""The student's side of ``python -m ptlm_course grade``: runs one hand-in inside the grading sandbox.

Started by :mod:`ptlm_course.grading` (never by hand) as ``python -m ptlm_course._grade_runner FD_IN FD_OUT``.
It runs the notebook's code cells in an IPython shell, then answers the grader's requests: call one of the
student's functions on inputs the grader sends and send back what it returned. Everything here runs next to
the student's code and is therefore untrusted: the grader only takes *data* from this process (the values
the student's functions return, loaded with ``torch.load(weights_only=True)``) and decides pass/fail itself.

Frames on both pipes: 8-byte big-endian length, then the payload (grader -> runner: a pickle; runner ->
grader: ``torch.save`` of plain values: None, bool, int, float, str, bytes, tensors, lists, tuples, dicts).
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types

UNSUPPORTED = "\x00ptlm-unsupported"          # dict key marking a value the grader cannot receive
GENERATOR = "\x00ptlm-generator"              # dict key marking a torch.Generator sent by the grader
SET = "\x00ptlm-set"                          # dict key marking a set (its items as a list)


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the grader closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def plain(x, depth: int = 0):
    """``x`` as values the grader can load safely; anything else becomes ``{UNSUPPORTED: type name}``."""
    import torch

    if depth > 32:
        return {UNSUPPORTED: "deeply nested value"}
    if x is None or type(x) in (bool, int, float, str, bytes):
        return x
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, str):
        return str(x)
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided or x.is_quantized or x.device.type == "meta":
            return {UNSUPPORTED: f"tensor with layout {x.layout}"}
        return x.detach().to("cpu").clone().contiguous()            # a plain tensor, not a subclass
    if isinstance(x, (list, tuple)):
        items = [plain(v, depth + 1) for v in x]
        return items if isinstance(x, list) else tuple(items)
    if isinstance(x, dict):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return {SET: [plain(v, depth + 1) for v in x]}
    if type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return plain(x.item(), depth + 1)
    return {UNSUPPORTED: type(x).__qualname__}


def _encode(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _error(error: BaseException) -> dict:
    return {"raised": type(error).__name__, "message": str(error)[:2000]}


class Runner:
    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out

    def send(self, obj) -> None:
        data = _encode(obj)
        _write_all(self.fd_out, struct.pack(">Q", len(data)) + data)

    def receive(self):
        (n,) = struct.unpack(">Q", _read_exact(self.fd_in, 8))
        return pickle.loads(_read_exact(self.fd_in, n))

    def start(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell

        import ptlm_course
        import torch  # noqa: F401  (imported before the clock starts)

        self.shell = InteractiveShell.instance()
        self.send({"ready": True, "package": os.path.realpath(ptlm_course.__file__)})
        request = self.receive()
        for index, source in enumerate(request["cells"]):
            result = self.shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
            self.send({"cell": index, "error": None if error is None else
                       f"{type(error).__name__}: {error}"[:2000]})
        while True:
            request = self.receive()
            try:
                reply = getattr(self, "op_" + request["op"])(request)
            except BaseException as error:             # noqa: BLE001 - reported, never fatal
                reply = _error(error)
            self.send(reply)

    # -- requests ----------------------------------------------------------------------------------------
    def op_kind(self, request) -> dict:
        namespace = self.shell.user_ns
        if request["name"] not in namespace:
            return {"kind": "missing"}
        obj = namespace[request["name"]]
        if isinstance(obj, type):
            return {"kind": "class"}
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) or callable(obj):
            return {"kind": "function"}
        return {"kind": "other"}

    def op_call(self, request) -> dict:
        import torch

        def unpack(value):
            if isinstance(value, dict) and GENERATOR in value:
                generator = torch.Generator()
                generator.set_state(value[GENERATOR])
                return generator
            return value

        args = [unpack(a) for a in request["args"]]
        kwargs = {k: unpack(v) for k, v in request["kwargs"].items()}
        fn = self.shell.user_ns[request["name"]]
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:                 # noqa: BLE001 - SystemExit too: the student's error
            return _error(error)

        def after(value):
            return {GENERATOR: value.get_state()} if isinstance(value, torch.Generator) else plain(value)

        return {"ok": plain(result), "args": [after(a) for a in args],
                "kwargs": {k: after(v) for k, v in kwargs.items()}}

    def op_check_in_kernel(self, request) -> dict:
        """Run a pristine check cell here (for checks of classes, which cannot cross the pipe)."""
        import contextlib
        import importlib

        for name in [n for n in list(sys.modules) if n == "ptlm_course" or n.startswith("ptlm_course.")]:
            del sys.modules[name]
        core = importlib.import_module("ptlm_course.checks._core")
        namespace = dict(self.shell.user_ns)
        namespace["CheckFailed"] = core.CheckFailed
        for check, module in request["imports"].items():
            namespace[check] = getattr(importlib.import_module(module), check)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(request["source"], "<check cell>", "exec"), namespace)
            return {"passed": True, "message": printed.getvalue().strip()[:2000]}
        except core.CheckFailed as error:
            return {"passed": False, "message": str(error.message)[:2000]}
        except BaseException as error:                 # noqa: BLE001
            return {"passed": False, "message": f"the check could not run: {type(error).__name__}: {error}"[:2000]}


def main() -> None:
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    try:
        Runner(fd_in, fd_out).start()
    except EOFError:
        pass


if __name__ == "__main__":
    main()
