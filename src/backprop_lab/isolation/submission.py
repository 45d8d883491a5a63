"""The lab's side of a learner's code: a process of its own, asked to load the code, run the check and time it, and
what it hands back turned into plain tensors and numbers, checked before anything is judged.

The lab never imports the learner's module. Its clock bounds every request (`impl.time_limit_s`): at the limit the
whole process group is killed, and the error says what the code was doing and for how long. However the child
ends (an exit of its own, a signal, a crash), the lab says so in a line and its own exit status and run statuses
stay its own.
"""

from __future__ import annotations

import hashlib
import math
import os
import select
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from backprop_lab.core.errors import UserCodeError
from backprop_lab.impls import protocol
from backprop_lab.isolation import limits, output, processes, replies, sealed, wire
from backprop_lab.isolation.replies import UNREADABLE, clean, unjudgeable
from backprop_lab.isolation.source import source_of

TIMED_PASSES = 6  # timing.min_run_time each, at most: the forward, and each backward paired with an autograd's


@dataclass
class Ran:
    """What a backward gave, as the check judges it."""

    loss: float
    manual: dict[str, torch.Tensor]  # node: the second call's gradient
    first: dict[str, torch.Tensor]  # node: the first call's (the input's on its first rows)
    not_given: list[str]  # nodes its code set no gradient at (the lab's stood in)
    implied_shift: Optional[float] = None  # what the code's own ReLU subtracts, where it has one
    changed: dict[str, str] = field(default_factory=dict)  # node: the step that changed its gradient after it was set


class Submission:
    """A learner's code in a process of its own, for one run: `open()`, then `check()` and `time()`, then `close()`
    (`with Submission(...).open() as code:` closes it). Its `path`, `source` and `sha256` are the bytes the lab
    read, hashed and handed to the child: what the run logs is what ran."""

    def __init__(self, code: str, base: Optional[Path], time_limit_s: float, memory_limit_gib: Optional[float]):
        self.code, self.base = code, (base or Path.cwd()).resolve()
        self.path, self.source = source_of(code, base)
        self.sha256 = hashlib.sha256(self.source).hexdigest() if self.source is not None else None
        self.label = str(self.path) if self.path is not None else code
        self.time_limit_s = time_limit_s
        self.memory_limit_bytes = limits.memory_limit_bytes(memory_limit_gib)
        self.style = ""  # Net, classes or functions: what the code defines, as the child found it
        self.defined: set[str] = set()  # which of the lesson's functions or classes it defines
        self.started: Optional[processes.Started] = None
        self.sock = None
        self.relay: Optional[output.Relay] = None
        self.stage, self.stage_since = "starting", time.monotonic()

    @property
    def memory_limit_gib(self) -> float:
        return self.memory_limit_bytes / 2**30

    def __enter__(self) -> Submission:  # opened already: `with Submission(...).open() as code:`
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # the requests

    def open(self) -> Submission:
        """The child started and the code loaded in it: its style, or the code's error (ConfigError for one the
        lab can say in a line, UserCodeError for the code's own traceback), the child stopped."""
        lab, child = wire.socket_pair()
        read, write = os.pipe()
        try:
            self.started = processes.starter().start((child.fileno(), write))
        finally:
            child.close()
            os.close(write)
        self.sock, self.relay = lab, output.Relay(read, self.label)
        message = {"op": "load", "launch_dir": str(self.base), "memory_limit_bytes": self.memory_limit_bytes}
        fds = ()
        if self.path is not None:
            message |= {"file": str(self.path)}
            fds = (sealed.sealed_bytes(self.source),)
        else:
            message |= {"module": self.code}
        try:
            reply, _ = self._ask(message, fds, self.time_limit_s, "importing your code")
            loaded = reply.get("loaded") if isinstance(reply.get("loaded"), dict) else {}
            self.style, defined = loaded.get("style"), loaded.get("defined")
            if self.style not in ("Net", "classes", "functions") or not isinstance(defined, list):
                raise self._garbled()
            self.defined = {str(n) for n in defined} & set(protocol.FUNCTIONS + protocol.CLASSES)
            if isinstance(loaded.get("note"), str):  # what the lab took instead of what the code meant, in a line
                print(f"note: {clean(self.label + ': ' + loaded['note'], 500)}", flush=True)
        except BaseException:
            self.close()
            raise
        finally:
            wire.close_all(fds)
        return self

    def check(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, shift: float,
              input_grad: bool, due: dict[str, tuple[int, ...]], sample_rows: int) -> Ran:  # fmt: skip
        """A forward and two backwards in the child, on these inputs (shared, not copied: x and y once per sweep);
        what it gave, checked to be what the lab can judge: tensors of the run's dtype and device, at its nodes."""
        data_manifest, data_fd = _shared_data(x, y)
        params_manifest, params_fd = sealed.pack(params)
        message = {"op": "check", "data": data_manifest, "params": params_manifest, "shift": shift,
                   "input_grad": input_grad, "device": str(x.device), "due": {k: list(v) for k, v in due.items()},
                   "sample_rows": sample_rows, "memory_limit_bytes": self.memory_limit_bytes}  # fmt: skip
        try:
            reply, fds = self._ask(message, (data_fd, params_fd), self.time_limit_s, "running your check")
        finally:
            os.close(params_fd)
        try:
            return self._ran(reply, fds, due, x.dtype, x.device)
        finally:
            wire.close_all(fds)

    def time(self, shift: float, input_grad: bool, reference_input_grad: bool, min_run_time: float, threads: int):
        """The learner's passes timed against autograd's in the child, on the inputs of the check."""
        from backprop_lab.impls import timing

        message = {"op": "time", "shift": shift, "input_grad": input_grad, "reference_input_grad": reference_input_grad,
                   "min_run_time": min_run_time, "threads": threads}  # fmt: skip
        limit = self.time_limit_s + TIMED_PASSES * min_run_time
        reply, _ = self._ask(message, (), limit, "timing your code")
        try:
            return timing.from_plain(reply["timing"], reference_input_grad)
        except UNREADABLE:
            raise self._garbled() from None

    def close(self) -> None:
        """The child's whole process group stopped, and the rest of what it printed relayed."""
        if self.started is not None:
            self.started.kill()
            self.started.wait()
            self.started = None  # reaped: its pid may be another process's from now on
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # waiting

    def _ask(self, message: dict, fds: tuple, limit_s: float, doing: str) -> tuple[dict, list[int]]:
        """Send a request, relay what the child prints, and take its reply; past `limit_s`, counted from the child's
        first word on this request (a fresh interpreter first imports torch, which is not the learner's time; the
        learner's code cannot have run before), the child is stopped."""
        wire.send(self.sock, message, fds)
        start = time.monotonic()
        deadline = start + (processes.READY_TIMEOUT_S if message["op"] == "load" else limit_s)
        self.stage, self.stage_since = doing, start
        first_word = True
        while True:
            now = time.monotonic()
            if now >= deadline:
                self._stop()
                raise UserCodeError(f"{self.label}: your code ran past impl.time_limit_s={self.time_limit_s:g} s "
                                    f"while {self.stage} ({now - self.stage_since:.1f} s of it, {now - start:.1f} s in "
                                    "all); its process was stopped")  # fmt: skip
            readable = [self.sock] + ([] if self.relay.closed else [self.relay.fd])
            ready = select.select(readable, [], [], deadline - now)[0]
            if self.relay.fd in ready:
                self.relay.pump()
            if self.sock not in ready:
                continue
            try:
                reply, got = wire.receive(self.sock, max_fds=1)
            except (wire.Closed, OSError):  # gone, or reset on its way out
                raise self._ended() from None
            except wire.WireError:
                raise self._garbled() from None
            if "stage" in reply and len(reply) == 1:
                if first_word:  # the learner's clock starts
                    start, first_word = time.monotonic(), False
                    deadline = start + limit_s
                self.stage, self.stage_since = clean(str(reply["stage"]), 200), time.monotonic()
                continue
            self.relay.pump()
            if "error" in reply:
                wire.close_all(got)
                raise self._error(reply)
            return reply, got

    def _stop(self) -> None:
        self.started.kill()
        self.relay.pump()

    def _ended(self) -> UserCodeError:
        """The child gone without a reply: how it ended, in a line."""
        self.started.kill()
        status = self.started.wait()
        self.relay.pump()
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        if code is None:
            how = "ended its process"
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            how = f"was killed by {name}" + (" (out of memory, or killed from outside?)" if -code == 9 else "")
        else:
            how = f"ended its own process (exit status {code}: os._exit, or a crash)"
        after = time.monotonic() - self.stage_since
        return UserCodeError(f"{self.label}: your code {how} while {self.stage}, {after:.1f} s in; the lab's verdict "
                             "needs it to hand its results back")  # fmt: skip

    def _garbled(self) -> UserCodeError:
        self._stop()
        return UserCodeError(f"{self.label}: your code's process handed back what the lab cannot read (while "
                             f"{self.stage}); its process was stopped")  # fmt: skip

    def _error(self, reply: dict) -> Exception:
        try:
            return replies.error(reply, self.label, self.memory_limit_gib)
        except UNREADABLE:
            return self._garbled()

    def _ran(self, reply: dict, fds: list[int], due: dict, dtype: torch.dtype, device: torch.device) -> Ran:
        try:
            loss = reply["loss"]
            if not isinstance(loss, (int, float)) or isinstance(loss, bool) or len(fds) != 1:
                raise ValueError
            loss = float(loss)
            implied = reply.get("implied_shift")
            implied = float(implied) if isinstance(implied, (int, float)) and not isinstance(implied, bool) else None
            names = {str(e.get("node")) for e in reply["given"]} | {f"first:{e.get('node')}" for e in reply["first"]}
            values = sealed.unpack(reply["tensors"], fds[0], names)
            not_given = [str(n) for n in reply["not_given"] if str(n) in due]
            changed = {str(k): clean(str(v), 60) for k, v in dict(reply.get("changed", {})).items() if str(k) in due}
            for note in list(reply.get("notes", []))[:3]:  # what the lab noticed of the code, said in a line each
                print(f"note: {clean(self.label + ': ' + str(note), 500)}", flush=True)
            manual = self._given(reply["given"], values, due, dtype, device, "")
            first = self._given(reply["first"], values, due, dtype, device, "first:", strict=False)
        except UNREADABLE:
            raise self._garbled() from None
        return Ran(loss, manual, first, not_given, implied, changed)

    def _given(self, entries: list, values: dict, due: dict, dtype: torch.dtype, device: torch.device, prefix: str,
               strict: bool = True) -> dict[str, torch.Tensor]:  # fmt: skip
        """Each gradient the child described, as the lab can judge it; `strict`: a gradient the lab cannot judge
        is the learner's error, said in a line (the first call's are context only: left out)."""
        out = {}
        for entry in entries:
            node = str(entry["node"])
            if node not in due:
                if not strict:
                    continue
                raise UserCodeError(f"{self.label}: your backward gave a gradient at {clean(node, 40)!r}, which is no "
                                    f"node of this model; the nodes are {', '.join(due)}")  # fmt: skip
            problem = unjudgeable(entry, due[node], dtype, device)
            if problem:
                if not strict:
                    continue
                raise UserCodeError(f"{self.label}: your {problem}")
            shape = tuple(entry["shape"])
            if entry.get("sent"):
                t = values.get(prefix + node)
                if t is None or tuple(t.shape) != shape or t.dtype != dtype or t.numel() > max(
                        math.prod(due[node]), sealed.SMALL):  # fmt: skip
                    raise ValueError  # more than the child sends: not its message
            elif shape == tuple(due[node]) and not (prefix and node == "x"):
                raise ValueError  # a gradient of the node's shape is always sent
            else:  # only its shape is judged: a placeholder of that shape, no memory
                t = torch.zeros((), dtype=dtype).expand(shape)
            out[node] = t.to(device)
        return out


_data: Optional[tuple[torch.Tensor, torch.Tensor, int, int, list, int]] = None  # x, y, their versions, the file


def _shared_data(x: torch.Tensor, y: torch.Tensor) -> tuple[list, int]:
    """x and y in a sealed memory file, made once for as long as they stay the same tensors (a sweep's jobs share
    one read of the data): every child maps it, none can change it."""
    global _data
    if _data is None or not (_data[0] is x and _data[1] is y and _data[2] == x._version and _data[3] == y._version):
        if _data is not None:
            os.close(_data[5])
        manifest, fd = sealed.pack({"x": x, "y": y})
        _data = (x, y, x._version, y._version, manifest, fd)
    return _data[4], _data[5]

