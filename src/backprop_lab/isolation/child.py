"""The learner's side: a process of its own, forked from the fork server, that loads the learner's code and runs it
on the inputs the lab hands it. It answers three requests, in order: `load` (import the code and say what it
defines), `check` (a forward and two backwards, every node's gradient handed back) and `time` (the learner's passes
timed against autograd's, in this same process and with the same threads).

Everything here runs after the learner's code may have changed anything in this process, so nothing here decides a
verdict: it hands back what the code gave, and the lab judges. Before each call into the learner's code it tells the
lab what it is about to do (a `stage`), so that a call stopped at the time limit can be named.
"""

from __future__ import annotations

import importlib
import linecache
import math
import os
import re
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

from backprop_lab.core.code_files import INSTALLED
from backprop_lab.core.errors import ConfigError, UserCodeError
from backprop_lab.impls import protocol
from backprop_lab.impls.common import all_grads
from backprop_lab.isolation import foresight, limits, sealed, wire

# the rows a preflight runs on: enough for every shape to show, a fraction of a second; a prime, so that no layer's
# width is taken for the rows
PREFLIGHT_ROWS = 61
PREFLIGHT_ABOVE = 4096  # rows: below this the full run is itself a preflight
# a tensor comes with temporaries as large (`2. * (inp - targ)`), and the check keeps a copy of a gradient's first
# call: one foreseen at more than this share of the process's memory would not be made
FORESEEN_COPIES = 4
MAX_ERROR_CHARS = 16_000  # of a traceback sent to the lab: a long message is cut here, never a flood
LAB_DIR = str(Path(__file__).resolve().parents[1])  # backprop_lab/: frames there are the lab's, not the learner's


class Reply(Exception):
    """A reply that ends a request early: the learner's error, said to the lab."""

    def __init__(self, message: dict):
        self.message = message


def theirs(filename: str) -> bool:
    """A frame of the learner's code: not the lab's, not Python's or an installed package's, not frozen."""
    return not (filename.startswith("<") or filename.startswith(LAB_DIR) or filename.startswith(INSTALLED))


class Child:
    def __init__(self, sock) -> None:
        self.sock, self.pid = sock, os.getpid()
        self.code: protocol.Code | None = None
        self.label = ""
        self.inputs: dict[str, torch.Tensor] = {}

    def stage(self, doing: str) -> None:
        wire.send(self.sock, {"stage": doing})

    @contextmanager
    def their_code(self, doing: str):
        """Around a call into the learner's code: whatever it raises (SystemExit and KeyboardInterrupt too) is their
        error, sent as their traceback."""
        self.stage(doing)
        try:
            yield
        except BaseException as e:  # noqa: B036 (a learner's KeyboardInterrupt is theirs, never a Ctrl-C here)
            self.stage(f"reporting the error your code raised while {doing}")
            raise Reply(self.error(e)) from None

    def error(self, e: BaseException) -> dict:
        """The lab's own refusal (what the code defines, a module not there) as its one line; anything the learner's
        code raised, the lab's error classes included, as their traceback under their file's name."""
        if isinstance(e, ConfigError) and not theirs(traceback.extract_tb(e.__traceback__)[-1].filename):
            return {"error": "config", "text": str(e)[:MAX_ERROR_CHARS]}
        try:
            text = str(UserCodeError.from_exception(e, self.label, theirs))
        except BaseException:  # noqa: B036 (an exception whose __str__ raises: its type is all there is to say)
            text = f"{self.label}: your code raised {type(e).__name__} (its message could not be read)"
        return {"error": "user", "text": text[:MAX_ERROR_CHARS]}

    # the requests

    def load(self, message: dict, fds: list[int]) -> dict:
        """Import the learner's code (a file's bytes, as the lab read and hashed them, or a module by name) and say
        its style; with the memory limit set first, and the working directory and import path as `python FILE`
        would have them."""
        limits.apply(message["memory_limit_bytes"])
        os.chdir(message["launch_dir"])
        if "file" in message:
            path = Path(message["file"])
            self.label = str(path)
            source = os.pread(fds[0], os.fstat(fds[0]).st_size, 0)
            # its neighbours importable, as `python FILE` has them, then the launch directory's modules (a notebook's)
            sys.path[:0] = [str(path.parent.resolve()), message["launch_dir"]]
            lines = source.decode("utf-8", "replace").splitlines(True)
            linecache.cache[str(path)] = (len(source), None, lines, str(path))  # tracebacks quote what ran
            module = ModuleType(f"backprop_lab_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}")
            module.__file__ = str(path)
            sys.modules[module.__name__] = module  # as an import would: dataclasses and pickling look it up there
            with self.their_code("importing your file"):
                exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
        else:
            self.label = name = message["module"]
            sys.path.insert(0, message["launch_dir"])  # as `python -m` would: a package beside you
            with self.their_code("importing your module"):
                try:
                    module = importlib.import_module(name)
                except ModuleNotFoundError as e:
                    if e.name is None or not name.startswith(e.name):
                        raise
                    raise ConfigError(f"impl.code: no module {name!r}; give a file (my_backward.py) or a module"
                                      ) from None  # fmt: skip
        self.code = protocol.Code(module, self.label)
        with self.their_code("reading what your code defines"):
            style = protocol.described(module, self.label)
            defined = sorted(self.code.defined)
            note = protocol.unused_model_note(module, style)
        return {"loaded": {"style": style, "defined": defined, "note": note}}

    def check(self, message: dict, fds: list[int]) -> dict:
        """A forward and two backwards on one forward, as the lab's check asks; every node's gradient handed back
        as given (the first call's too: a backward that accumulates must show), and the inputs compared afterwards
        with an untouched mapping of them."""
        device = torch.device(message["device"])
        mapped = sealed.unpack(message["data"], fds[0]) | sealed.unpack(message["params"], fds[1])
        untouched = sealed.unpack(message["data"], fds[0]) | sealed.unpack(message["params"], fds[1])
        self.inputs = {k: v.to(device) for k, v in mapped.items()}
        params = {k: v for k, v in self.inputs.items() if k not in ("x", "y")}
        x, y = self.inputs["x"], self.inputs["y"]
        shift, input_grad, sample = float(message["shift"]), bool(message["input_grad"]), int(message["sample_rows"])
        due = {k: tuple(v) for k, v in message["due"].items()}
        if x.shape[0] > PREFLIGHT_ABOVE:
            foreseen = self.preflight(params, x, y, shift, input_grad, due, message["memory_limit_bytes"])
            if foreseen:
                return foreseen
        with self.their_code("building your net"):
            net = protocol.build(self.code, params, shift, input_grad, keep_nodes=True)
        with self.their_code("running your forward"):
            loss = net.forward(x, y)
            loss = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        with self.their_code("reading the shift your relu subtracts"):
            implied = protocol.implied_shift(self.code.module, shift) if self.code.style != "Net" else None
        with self.their_code("running your backward (its first call)"):
            first = all_grads(net, net.backward())
            first = {k: (v[:sample] if k == "x" else v).detach().clone() for k, v in first.items()
                     if isinstance(v, torch.Tensor)}  # fmt: skip
        with self.their_code("running your backward (its second call, on the same forward)"):
            manual = {k: v for k, v in all_grads(net, net.backward()).items() if v is not None}
            not_given = [str(n) for n in getattr(net, "not_given", list)()]
            changed = {str(k): str(v) for k, v in getattr(net, "changed", dict)().items()}
            note = getattr(net, "forward_note", None)
        spoilt = [k for k, v in untouched.items() if not torch.equal(self.inputs[k].cpu(), v)]
        if spoilt:
            return {"error": "in_place", "changed": spoilt}
        with self.their_code("handing back your gradients"):
            given, values = _described(manual, due, "")
            earlier, earlier_values = _described(first, due, "first:")
            manifest, fd = sealed.pack(values | earlier_values)
        self.reply_fds = (fd,)
        return {"loss": loss, "implied_shift": implied, "not_given": not_given, "changed": changed,
                "notes": [note] if isinstance(note, str) else [], "given": given, "first": earlier,
                "tensors": manifest}  # fmt: skip

    def preflight(self, params, x, y, shift: float, input_grad: bool, due: dict, limit: int) -> Optional[dict]:
        """The learner's forward and backward on the first PREFLIGHT_ROWS rows, before the full data. A gradient
        whose shape grows with the rows faster than its node's (an (N, N) from an (N, 1) output minus an (N,)
        target), or any tensor their steps make that is larger than anything the net needs (a per-example product
        summed afterwards), is foreseen at the full N; where it would not fit the process's memory it is said (a
        reply the lab turns into a line) instead of allocated."""
        rows, n = PREFLIGHT_ROWS, x.shape[0]
        ceiling = max(math.prod(s) for s in due.values())
        watch = foresight.Watch(rows, n, ceiling, theirs)
        with self.their_code(f"running a preflight of your forward and backward on {rows} rows"), watch:
            net = protocol.build(self.code, {k: protocol.fresh(v) for k, v in params.items()}, shift, input_grad)
            net.forward(x[:rows], y[:rows])
            grads = all_grads(net, net.backward())
        for node, g in grads.items():
            if not isinstance(g, torch.Tensor) or node not in due:
                continue
            small_due = tuple(rows if d == n else d for d in due[node])
            shape = tuple(g.shape)
            if shape == small_due:
                continue
            full = foresight.at_full(shape, rows, n)
            size = math.prod(full) * g.element_size()
            if size * FORESEEN_COPIES > limit:
                return {"error": "foreseen", "node": node, "shape": list(shape), "full": list(full), "bytes": size,
                        "rows": rows, "due": list(small_due)}  # fmt: skip
        made = watch.largest
        if made and made.bytes * FORESEEN_COPIES > limit:
            rest = tuple(d for d in made.shape if d != rows)
            weight = next((k for k, s in due.items() if k[0] == "w" and s == rest), "")  # a weight's, per example
            return made.reply(rows) | {"per_example": weight}
        return None

    def time(self, message: dict) -> dict:
        """The learner's passes against autograd's, each measured alone (timing.py), on fresh weights."""
        from backprop_lab.impls import timing

        params = {k: v for k, v in self.inputs.items() if k not in ("x", "y")}
        x, y, shift = self.inputs["x"], self.inputs["y"], float(message["shift"])
        with self.their_code("timing your forward and backward against autograd's"):
            net = protocol.build(self.code, {k: protocol.fresh(v) for k, v in params.items()}, shift,
                                 bool(message["input_grad"]))  # fmt: skip
            timed = timing.time_against_autograd(net, params, x, y, shift, bool(message["reference_input_grad"]),
                                                        float(message["min_run_time"]), int(message["threads"]))
        return {"timing": timing.as_plain(timed)}


def _described(grads: dict, due: dict[str, tuple], prefix: str) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """What the lab needs to judge each gradient: what it is (type, dtype, shape, device), and its values where they
    can be judged (a float tensor of the node's shape, or a small one of another)."""
    described, values = [], {}
    for node, g in grads.items():
        entry = {"node": str(node)[:100]}
        if not isinstance(g, torch.Tensor):
            described.append(entry | {"type": type(g).__name__[:100]})
            continue
        plain = g.as_subclass(torch.Tensor) if type(g) is not torch.Tensor else g
        entry |= {"dtype": str(plain.dtype).removeprefix("torch."), "shape": list(plain.shape),
                  "device": str(plain.device)}  # fmt: skip
        if entry["dtype"] in sealed.DTYPES and (tuple(plain.shape) == due.get(node) or plain.numel() <= sealed.SMALL):
            values[prefix + entry["node"]] = plain.detach()
            entry["sent"] = True
        described.append(entry)
    return described, values


def serve(sock) -> None:
    """Requests until `exit`, or until the lab is gone. Never returns: the process leaves by os._exit, so that no
    handler the learner's code registered (atexit, a thread) has a say in how it ends."""
    child = Child(sock)
    requests = {"load": child.load, "check": child.check, "time": lambda message, fds: child.time(message)}
    while True:
        try:
            message, fds = wire.receive(sock)
        except wire.WireError:
            os._exit(0)
        op = message.get("op")
        if op not in requests:
            os._exit(0)
        child.reply_fds = ()
        try:
            reply = requests[op](message, fds)
        except Reply as r:
            reply = r.message
        finally:
            wire.close_all(fds)
        if os.getpid() != child.pid:  # a copy the learner's code forked: it never speaks for the child
            os._exit(0)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:  # noqa: B036 (a stream the learner's code closed or replaced)
                pass
        wire.send(sock, reply, child.reply_fds)
        wire.close_all(child.reply_fds)


def start(sock_fd: int, output_fd: int) -> None:
    """In the forked process: a session of its own (a Ctrl-C at the terminal is the lab's, and the lab stops this
    whole process group at once), stdout and stderr into the lab's pipe, line by line."""
    import signal
    import socket

    if os.getsid(0) != os.getpid():  # a fresh interpreter was started in a session of its own already
        os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    serve(socket.socket(fileno=sock_fd))
