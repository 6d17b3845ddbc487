"""The student's side of ``python -m ptlm_course grade``: runs one hand-in inside the grading sandbox.

Started by :mod:`ptlm_course.machinery.grading` (never by hand) as
``python -m ptlm_course.machinery._grade_runner FD_IN FD_OUT``.
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
MODULE = "\x00ptlm-module"                    # an nn.Module of the student's: its structure and weights
OBJECT = "\x00ptlm-object"                    # any other object of the student's: a reference, kept here
REF = "\x00ptlm-ref"                          # grader -> runner: one of those objects (or a sub-module)
STATE = "\x00ptlm-state"                      # a module's weights, requires_grad and train/eval flags


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


def plain(x, depth: int = 0, other=None):
    """``x`` as values the grader can load safely; anything else becomes ``other(x)`` if given, else
    ``{UNSUPPORTED: type name}``."""
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
        items = [plain(v, depth + 1, other) for v in x]
        return items if isinstance(x, list) else tuple(items)
    if isinstance(x, dict):
        return {plain(k, depth + 1): plain(v, depth + 1, other) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return {SET: [plain(v, depth + 1) for v in x]}
    if type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return plain(x.item(), depth + 1)
    return other(x) if other is not None else {UNSUPPORTED: type(x).__qualname__}


BUILT_IN = {   # torch.nn layers the grader rebuilds as the real class: name -> their constructor's arguments
    "Linear": lambda m: [m.in_features, m.out_features, m.bias is not None],
    "LayerNorm": lambda m: [list(m.normalized_shape), m.eps, m.elementwise_affine,
                            getattr(m, "bias", None) is not None],
    "Embedding": lambda m: [m.num_embeddings, m.embedding_dim, m.padding_idx],
    "Dropout": lambda m: [m.p],
    "ReLU": lambda m: [], "GELU": lambda m: [m.approximate], "Tanh": lambda m: [], "Identity": lambda m: [],
}


def module_state(module) -> dict:
    """What the grader needs to mirror a module: weights, requires_grad, buffers, train/eval, plain attributes."""
    return {
        "params": {n: (p.detach().clone(), bool(p.requires_grad)) for n, p in module.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in module.named_buffers()},
        "training": {n: bool(m.training) for n, m in module.named_modules()},
        "flags": {n: {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"
                      and type(v) in (bool, int, float, str)} for n, m in module.named_modules()},
    }


def apply_state(module, state: dict) -> None:
    """Load the grader's copy of a module's state (weights, dtypes, requires_grad, train/eval) into it."""
    params = dict(module.named_parameters())
    for name, (value, requires_grad) in state["params"].items():
        if name in params:
            params[name].data = value
            params[name].requires_grad_(requires_grad)
    modules = dict(module.named_modules())
    for name, value in state["buffers"].items():
        owner, _, leaf = name.rpartition(".")
        if owner in modules and leaf in modules[owner]._buffers:
            modules[owner]._buffers[leaf] = value
    for name, flag in state["training"].items():
        if name in modules:
            modules[name].training = flag


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
                if request.get("sync"):                 # the modules' state after the call, for the grader
                    reply["states"] = {oid: module_state(self.objects[oid]) for oid in request["sync"]}
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

    # -- the student's objects, kept here and referred to by number ------------------------------------------
    def keep(self, obj) -> int:
        self.objects = getattr(self, "objects", {})
        self.objects[len(self.objects) + 1] = obj
        return len(self.objects)

    def encode(self, value, arguments=()):
        """``value`` as data: an nn.Module as its structure and state, any other object as a reference."""
        import torch.nn as nn

        def other(x):
            if isinstance(x, nn.Module):
                return {MODULE: self.describe(x, arguments)}
            return {OBJECT: {"id": self.keep(x), "type": type(x).__qualname__}}

        return plain(value, other=other)

    def describe(self, module, arguments) -> dict:
        tree = []
        for name, m in module.named_modules():
            kind = type(m).__name__
            given = [i for i, a in enumerate(arguments) if a is m]       # a module the grader passed in
            if given:
                tree.append([name, "argument", [given[0]]])
            elif type(m).__module__.startswith("torch.nn") and kind in BUILT_IN:
                tree.append([name, kind, BUILT_IN[kind](m)])
            else:
                tree.append([name, "Module", [type(m).__qualname__]])
        return {"id": self.keep(module), "tree": tree, "state": module_state(module)}

    def resolve(self, value):
        import torch

        if isinstance(value, dict) and GENERATOR in value:
            generator = torch.Generator()
            generator.set_state(value[GENERATOR])
            return generator
        if isinstance(value, dict) and REF in value:
            obj = self.objects[value[REF]["id"]]
            return obj.get_submodule(value[REF]["path"]) if value[REF]["path"] else obj
        return value

    def sync(self, request) -> None:
        for oid, state in request.get("sync", {}).items():
            apply_state(self.objects[oid], state)

    def target(self, request):
        return self.shell.user_ns[request["name"]] if "name" in request else self.resolve({REF: request["ref"]})

    def op_call(self, request) -> dict:
        import torch
        import torch.nn as nn

        self.sync(request)
        args = [self.resolve(a) for a in request["args"]]
        kwargs = {k: self.resolve(v) for k, v in request["kwargs"].items()}
        fn = self.target(request)
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:                 # noqa: BLE001 - SystemExit too: the student's error
            return _error(error)

        def after(value):
            if isinstance(value, torch.Generator):
                return {GENERATOR: value.get_state()}
            if isinstance(value, nn.Module):
                return {STATE: module_state(value)}
            return plain(value)

        modules = [a for a in [*args, *kwargs.values()] if isinstance(a, nn.Module)]
        return {"ok": self.encode(result, modules), "args": [after(a) for a in args],
                "kwargs": {k: after(v) for k, v in kwargs.items()}}

    def op_getattr(self, request) -> dict:
        self.sync(request)
        try:
            value = getattr(self.target(request), request["attribute"])
        except BaseException as error:                 # noqa: BLE001
            return _error(error)
        return {"ok": self.encode(value)}


def main() -> None:
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    try:
        Runner(fd_in, fd_out).start()
    except EOFError:
        pass


if __name__ == "__main__":
    main()
