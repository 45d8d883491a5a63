"""The project's scripts in a process of their own, as a user runs them, without paying for the imports each time.

A fresh interpreter spends about 4 s of CPU importing torch, MLflow and Hydra before a script does anything, and
the suite starts a script a few hundred times. So the test session starts one interpreter (share(), which pytest's
xdist workers use; a test process without workers starts its own at its first script) that imports those
libraries and the project's modules (and computes nothing: a process forked from one that has used torch's OpenMP
pool hangs in its first parallel loop), and forks a child of it for each script run. The child takes the run's
working directory, environment, stdin, stdout, stderr and argv, and runs the script as `__main__`, as
`python script.py` would; its pid, exit status and signals are its own.

What a fork cannot stand in for runs in a fresh interpreter (`popen` decides): any interpreter option, a variable read
when a library is imported (PYTHON*, locale, OpenMP and BLAS threads, TORCH_*, MLflow's but its tracking URI and
credentials), a Popen option such as `preexec_fn`. So do the tests about start-up itself (`-X importtime`) and
a shell's command line (a closed stream, a pipe). BACKPROP_LAB_TESTS_FRESH=1 runs every one in a fresh interpreter.

    python tests/preloaded.py SOCKET PID    # the forking interpreter, serving while PID lives (popen() starts it)
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Optional

# what the study's scripts import, heaviest first; then the project's own modules (_preload)
PRELOAD = ("torch", "torch.utils.benchmark", "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.store.db.utils", "pandas", "scipy.stats", "matplotlib.figure", "matplotlib.backends.backend_agg",
           "PIL.Image", "hydra", "hydra.core.plugins", "hydra._internal.utils", "omegaconf", "rich.console",
           "rich.table", "rich.progress", "rich.status", "pygments.lexers", "requests", "sqlalchemy",
           "sqlalchemy.dialects.sqlite", "alembic", "filelock", "pyarrow.pandas_compat", "psutil", "optuna")
READ_AT_IMPORT = ("PYTHON", "LC_", "LANG", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "TORCH", "MLFLOW_", "HYDRA")
READ_WHEN_USED = {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                  "MLFLOW_TRACKING_TOKEN", "HYDRA_FULL_ERROR"}  # fmt: skip
FRESH = "BACKPROP_LAB_TESTS_FRESH"
SHARED = "BACKPROP_LAB_TESTS_PRELOADED"  # the session's forking interpreter, for its workers (share())
INHERITED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)  # what a child may find ignored


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(READ_AT_IMPORT) and k not in READ_WHEN_USED}


def _forkable(args: list[str], env: Optional[dict[str, str]], kwargs: dict) -> bool:
    """A script or `-c` code under this interpreter, with no option and no start-up setting of its own."""
    if os.environ.get(FRESH) or len(args) < 2 or args[0] != sys.executable or set(kwargs) - {"text", "timeout"}:
        return False
    if not (args[1] == "-c" and len(args) > 2 or not args[1].startswith("-") and args[1].endswith(".py")):
        return False
    return env is None or _startup_env(env) == _startup_env(dict(os.environ))


# ---- the test's side ----------------------------------------------------------------------------------------------


class _Forker:
    """A forking interpreter: the one the test session shares (share(), found in $SHARED), or where there is none
    or it is gone, this process's own, started at its first use."""

    _instance: Optional[_Forker] = None

    def __init__(self, pid: int, path: str, proc: Optional[subprocess.Popen] = None) -> None:
        self.pid, self.path, self.proc = pid, path, proc  # proc: where this process started it

    @classmethod
    def start(cls) -> _Forker:
        folder = tempfile.mkdtemp(prefix="preloaded-")
        with (Path(folder) / "log").open("wb") as errors:  # the interpreter holds its own copy
            proc = subprocess.Popen([sys.executable, __file__, os.path.join(folder, "socket"), str(os.getpid())],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        forker = cls(proc.pid, os.path.join(folder, "socket"), proc)
        atexit.register(forker.close)
        return forker

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait_ready(self) -> None:
        """Until its socket appears, which it makes once it has preloaded and accepts."""
        deadline = time.time() + 180
        while not os.path.exists(self.path):
            if not self.alive() or time.time() > deadline:
                log = Path(self.path).with_name("log")
                raise RuntimeError(f"the preloaded interpreter did not start: {log.read_text()[-3000:]}")
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)

    @classmethod
    def _shared(cls) -> Optional[_Forker]:
        found = os.environ.get(SHARED)
        if not found:
            return None
        forker = cls(**json.loads(found))
        return forker if forker.alive() else None

    @classmethod
    def get(cls) -> _Forker:
        if cls._instance is None or not cls._instance.alive():
            cls._instance = cls._shared() or cls.start()
            cls._instance.wait_ready()
        return cls._instance

    def fork(self, request: dict, fds: list[int]) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        payload = json.dumps(request).encode()
        socket.send_fds(conn, [len(payload).to_bytes(8, "big") + payload], fds)
        return conn


class TimedOut(subprocess.TimeoutExpired):
    """A timeout that says what the process printed before it, and whether it was still alive (a stop that hangs
    prints where each thread is after stop.STUCK_AFTER_S): a failing test shows where, not only that it waited."""

    def __init__(self, cmd, timeout, output, stderr, alive: bool) -> None:
        super().__init__(cmd, timeout, output, stderr)
        self.alive = alive

    def __str__(self) -> str:
        state = "still running" if self.alive else "exited, its output still held open by another process"
        tail = (self.stderr or "")[-6000:]
        return f"{super().__str__()}; {state}; its stderr ended with:\n{tail if isinstance(tail, str) else repr(tail)}"


class ForkedProcess:
    """subprocess.Popen's interface to a child of the preloaded interpreter (not of this process: its exit status
    comes over the socket that asked for it)."""

    def __init__(self, args, cwd=None, env=None, stdin=None, stdout=None, stderr=None, text=False):
        self.args, self.returncode, self.text = args, None, text
        ends, ours = [], {}
        for name, given, mode in (("stdin", stdin, "w"), ("stdout", stdout, "r"), ("stderr", stderr, "r")):
            if given == subprocess.PIPE:
                read, write = os.pipe()
                theirs, mine = (read, write) if mode == "w" else (write, read)
                ends.append(theirs)
                ours[name] = os.fdopen(mine, mode + ("" if text else "b"))
            elif given == subprocess.DEVNULL:
                ends.append(os.open(os.devnull, os.O_RDONLY if mode == "w" else os.O_WRONLY))
            elif given == subprocess.STDOUT:
                ends.append(os.dup(ends[-1]))
            else:
                ends.append(os.dup(given if isinstance(given, int) else given.fileno() if given else
                                   (0, 1, 2)[len(ends)]))  # fmt: skip
        self.stdin, self.stdout, self.stderr = ours.get("stdin"), ours.get("stdout"), ours.get("stderr")
        request = {"argv": args[1:], "cwd": str(cwd or os.getcwd()), "env": dict(os.environ if env is None else env),
                   "ignored": [s for s in INHERITED if signal.getsignal(s) == signal.SIG_IGN]}  # fmt: skip
        try:
            self._conn = _Forker.get().fork(request, ends)
        finally:
            for fd in ends:
                os.close(fd)
        self._reply = self._conn.makefile("r")
        self.pid = int(self._reply.readline())

    def poll(self) -> Optional[int]:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._finish()
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._finish()
        return self.returncode

    def _finish(self) -> None:
        line = self._reply.readline()
        self.returncode = int(line) if line else -signal.SIGKILL  # the forking interpreter itself was killed
        self._conn.close()

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input=None, timeout: Optional[float] = None):
        if self.stdin:
            if input:
                self.stdin.write(input)
            self.stdin.close()
        streams = {"out": self.stdout, "err": self.stderr}
        found: dict[str, list[bytes]] = {name: [] for name, stream in streams.items() if stream}

        def read(name: str) -> None:  # bytes as they come: a timeout still shows what came before it
            while piece := getattr(streams[name], "buffer", streams[name]).read1():
                found[name].append(piece)

        def joined(name: str):
            if name not in found:
                return None
            data = b"".join(found[name])
            return io.TextIOWrapper(io.BytesIO(data), encoding=streams[name].encoding).read() if self.text else data

        readers = [threading.Thread(target=read, args=(name,), daemon=True) for name in found]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.time() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.time()))
            if reader.is_alive():
                raise TimedOut(self.args, timeout, joined("out"), joined("err"), alive=self.poll() is None)
        self.wait(None if deadline is None else max(0.0, deadline - time.time()))
        for stream in (self.stdout, self.stderr):
            if stream:
                stream.close()
        return joined("out"), joined("err")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream:
                stream.close()
        self.wait()


def share() -> None:
    """Start the forking interpreter that the processes this one starts from now on (pytest-xdist's workers) share,
    so that its imports are paid once; it ends with this process."""
    if not os.environ.get(FRESH):
        forker = _Forker.start()
        os.environ[SHARED] = json.dumps({"pid": forker.pid, "path": forker.path})


def popen(args: list[str], *, cwd=None, env=None, stdin=None, stdout=None, stderr=None, text=False, **kwargs):
    """subprocess.Popen, or a ForkedProcess where a fork stands in for a fresh interpreter (the module's docstring)."""
    args = [str(a) for a in args]
    if not _forkable(args, env, kwargs):
        return subprocess.Popen(args, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, text=text, **kwargs)
    return ForkedProcess(args, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, text=text)


def run(args: list[str], *, capture_output=False, timeout=None, check=False, input=None, **kwargs):
    """subprocess.run, through popen."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with popen(args, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, out, err)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


# ---- the forking interpreter's side --------------------------------------------------------------------------------


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size = int.from_bytes(data[:8], "big")
    while len(data) < 8 + size:
        data += conn.recv(1 << 16)
    return json.loads(data[8:]), fds


def _become(request: dict, fds: list[int]) -> None:
    """In the child: take the run's streams, directory, environment, argv and ignored signals, as `python ARGV...`
    started by the asking process would."""
    for signum in INHERITED:  # an ignored signal stays ignored across exec; Python sets its SIGINT handler otherwise
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if signum in request["ignored"] else default)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    sys.path[0] = "" if sys.argv[0] == "-c" else os.path.dirname(os.path.abspath(sys.argv[0]))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


def _preload() -> None:
    """The libraries, the project's modules (as each run would import them: nothing of theirs runs at import) and
    Hydra's plugins; then a figure drawn, for matplotlib's fonts and the parser of a log axis's tick labels (mathtext):
    nothing that starts a thread pool."""
    import pkgutil

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    import backprop_lab

    for module in pkgutil.walk_packages(backprop_lab.__path__, "backprop_lab."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    from hydra.core.plugins import Plugins
    from matplotlib.figure import Figure

    Plugins.instance()
    figure = Figure(figsize=(2, 2))
    figure.subplots().set(title="warm", xlabel="x", yscale="log", ylim=(1e-3, 10))
    figure.savefig(io.BytesIO(), format="png")


def serve(path: str, owner: int) -> tuple[dict, list[int]]:
    """Preload, then fork a child per request, while the process that started it (`owner`, given: one gone before
    this one could ask would leave it serving for ever) lives; the child returns from here (with its request)."""
    _preload()
    gc.freeze()  # what is loaded stays out of the children's collections, which would write to its pages
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the socket appears only once it accepts
    waiting = {}
    while os.getppid() == owner:  # the process that started it (pytest's, or one test worker's) is gone: so is it
        if select.select([listener], [], [], 0.05)[0]:
            conn, _ = listener.accept()
            request, fds = _receive(conn)
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in [conn, *waiting.values()]:
                    other.close()
                return request, fds
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid)
            with contextlib.suppress(OSError):
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()
    sys.exit(0)


def _exit_status(exit: SystemExit) -> int:
    if exit.code is None or isinstance(exit.code, int):
        return (exit.code or 0) & 0xFF
    print(exit.code, file=sys.stderr)
    return 1


def _flush_standard_streams(status: int) -> int:
    """As the interpreter does on exit: a stream that cannot be flushed is reported, and makes a success 120."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception as e:  # noqa: BLE001 (whatever the interpreter would report)
            with contextlib.suppress(Exception):
                print(f"Exception ignored in: {stream!r}", file=sys.__stderr__)
                traceback.print_exception(e, file=sys.__stderr__)
            status = status or 120
    return status


def run_as_main() -> None:
    """The script or code as __main__, then the interpreter's exit, but for freeing every module's objects: that
    would write to each memory page the child shares with the preloaded interpreter, copying them all."""
    status, interrupted = 0, False
    try:
        if sys.argv[0] == "-c":  # its own __main__, as `python -c` has: what it defines pickles by reference
            main = sys.modules["__main__"] = types.ModuleType("__main__")
            exec(compile(sys.argv.pop(1), "<string>", "exec"), main.__dict__)
        else:
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:  # uncaught: its traceback, and a KeyboardInterrupt's death by SIGINT
        sys.excepthook(type(e), e, e.__traceback__)
        status, interrupted = 1, isinstance(e, KeyboardInterrupt)
    threading._shutdown()  # the interpreter's exit: wait for the threads that are not daemons, then run atexit
    atexit._run_exitfuncs()
    status = _flush_standard_streams(status)
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


if __name__ == "__main__":
    _become(*serve(sys.argv[1], int(sys.argv[2])))
    run_as_main()
