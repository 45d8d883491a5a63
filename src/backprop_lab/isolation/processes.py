"""How a learner's process starts: forked from a clean fork server, or as a fresh interpreter.

The fork server is a fresh interpreter that imports torch and the child's own modules (isolation/child.py) and then
only forks: it never runs anyone's code, so every child starts from the same clean state, each in a session of its
own, for a few milliseconds instead of the second and a half that importing torch costs. It ends when the lab's end
of its socket closes (the lab is gone, however it went). `BACKPROP_LAB_CHILD_START=fresh` starts each child as a
fresh interpreter instead, for comparison (README, "A process of its own").

Both start the child with an environment that holds none of the lab's secrets (redaction's names and URIs) and
none of MLflow's settings: the learner's code has no business with the store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

from backprop_lab.isolation import wire

START_ENV = "BACKPROP_LAB_CHILD_START"  # fork (the default) or fresh
READY_TIMEOUT_S = 300.0  # for the fork server's imports: seconds on an idle machine, minutes on a swamped one


def child_environment() -> dict[str, str]:
    """The lab's environment less what the learner's code must not see: secrets, and MLflow's settings."""
    from backprop_lab.core import redaction

    def kept(name: str, value: str) -> bool:
        return not (redaction.is_secret_name(name) or name.startswith("MLFLOW_") or redaction.redact(value) != value)

    return {k: v for k, v in os.environ.items() if kept(k, v)} | {"PYTHONSAFEPATH": "1"}


def _python(*args: str, pass_fds: tuple[int, ...]) -> subprocess.Popen:
    """`python -m ...` in a session of its own, from `/` (nothing of the launch directory shadows a module)."""
    return subprocess.Popen([sys.executable, "-m", *args], pass_fds=pass_fds, env=child_environment(), cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


class Started:
    """A learner's process, as the lab holds it: its pid (its process group's too), and how it ended."""

    def __init__(self, pid: int, waiter) -> None:
        self.pid, self._waiter, self.status = pid, waiter, None

    def kill(self) -> None:
        """The whole process group, and the process itself in case it has not made its group yet; nothing once
        it has been reaped (its pid may be another's by then)."""
        if self.status is not None:
            return
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self) -> Optional[int]:
        """Its wait status (os.waitstatus_to_exitcode reads it), after kill(); None where it cannot be known."""
        if self.status is None:
            self.status = self._waiter(self.pid)
        return self.status


class ForkServer:
    def __init__(self) -> None:
        self.process: Optional[subprocess.Popen] = None
        self.sock: Optional[socket.socket] = None

    def warm(self) -> None:
        """Started, so that it imports torch while the lab does its own work."""
        if self.process is None or self.process.poll() is not None:
            lab, server = wire.socket_pair()
            with server:
                self.process = _python("backprop_lab.isolation.processes", str(server.fileno()),
                                       pass_fds=(server.fileno(),))  # fmt: skip
            self.sock = lab

    def start(self, fds: tuple[int, int]) -> Started:
        for attempt in (1, 2):  # a server that a learner's code killed is started again, once
            self.warm()
            try:
                wire.send(self.sock, {"op": "fork"}, fds)
                reply, _ = wire.receive(self.sock, time.monotonic() + READY_TIMEOUT_S, max_fds=0)
                return Started(int(reply["pid"]), self._wait)
            except (OSError, wire.WireError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _wait(self, pid: int) -> Optional[int]:
        try:
            wire.send(self.sock, {"op": "wait", "pid": pid})
            reply, _ = wire.receive(self.sock, time.monotonic() + 60, max_fds=0)
        except (OSError, wire.WireError, wire.Expired, AttributeError):
            return None  # the server is gone, and the child's status with it
        status = reply.get("status")
        return status if isinstance(status, int) else None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


class Fresh:
    """Each child a fresh interpreter (`python -m backprop_lab.isolation.child`): no fork server, torch imported
    anew every time."""

    def __init__(self) -> None:
        self.processes: dict[int, subprocess.Popen] = {}

    def warm(self) -> None:
        pass

    def start(self, fds: tuple[int, int]) -> Started:
        process = _python("backprop_lab.isolation.fresh", *map(str, fds), pass_fds=fds)
        self.processes[process.pid] = process
        return Started(process.pid, self._wait)

    def _wait(self, pid: int) -> Optional[int]:
        process = self.processes.pop(pid)
        process.wait()
        return -process.returncode if process.returncode < 0 else process.returncode << 8  # as waitpid's status

    def close(self) -> None:
        pass


_starter: Optional[ForkServer | Fresh] = None


def starter() -> ForkServer | Fresh:
    global _starter
    if _starter is None:
        _starter = Fresh() if os.environ.get(START_ENV) == "fresh" else ForkServer()
    return _starter


def serve(fd: int) -> None:
    """The fork server's loop: fork a child per request, and tell each child's wait status when asked."""
    import torch  # noqa: F401 (what every child needs, imported once here)

    from backprop_lab.impls import timing  # noqa: F401
    from backprop_lab.isolation import child

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the lab's to handle; this ends when the lab does
    sock = socket.socket(fileno=fd)
    children: dict[int, Optional[int]] = {}  # pid: its wait status, once reaped
    while True:
        try:
            message, fds = wire.receive(sock)
        except wire.WireError:
            break
        if message.get("op") == "fork":
            pid = os.fork()
            if pid == 0:
                try:
                    sock.close()
                    child.start(*fds)
                finally:
                    os._exit(70)
            wire.close_all(fds)
            children[pid] = None
            wire.send(sock, {"pid": pid})
        elif message.get("op") == "wait":
            pid = message["pid"]
            if pid in children and children[pid] is None:
                children[pid] = os.waitpid(pid, 0)[1]
            wire.send(sock, {"status": children.pop(pid, None)})
    for pid in children:  # the lab is gone: so are its children
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    os._exit(0)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
