"""Every kind of bad input a user can give, as they would give it, and the one line each must get: the catalogue
that `test_bad_input.py` runs and that `docs/bad-input.md`'s table is written from, with the times measured.

    python tests/bad_input.py > /tmp/table.md    # each case run as a user would, timed (the store waits 20 s)
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import preloaded
from helpers import FAST, ROOT, fashion_dir, serve, tiny_mnist, write_idx, write_pkl_gz
from mlflow.tracking import MlflowClient
from test_user_code import CORRECT

from backprop_lab.cli import USER_ERROR_EXIT
from backprop_lab.config import options

NO_RUN, FAILED = "none", "FAILED"
LEARNER = "running the learner's code"


ENDLESS_STR = "class E(Exception):\n    def __str__(self):\n        while True:\n            pass\n" + CORRECT.replace(
    "    inp.g = (inp > 0)", "    raise E()\n    inp.g = (inp > 0)")


LYING = """
import torch


class Agreeable(torch.Tensor):  # every comparison says "no difference"
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("sub", "__sub__", "abs", "norm", "allclose", "eq", "isclose"):
            return torch.zeros(())
        return super().__torch_function__(func, types, args, kwargs or {})


def relu_grad(inp, out):
    inp.g = ((inp > 0).float() * out.g * 3).as_subclass(Agreeable)
"""
CHEATS = """
import backprop_lab.study.grad_check as gc, backprop_lab.study.backward as bw
gc.overall = lambda checks: "ok"
gc.first_divergent = lambda checks: "none"
bw.judge = lambda *args, **kwargs: None
"""
SPOILS = """
import threading, time
_seen, _spoilt = [], threading.Event()


def _spoil():
    while True:
        for t in _seen:
            t.add_(1.0)
            _spoilt.set()
        time.sleep(0.001)


threading.Thread(target=_spoil, daemon=True).start()
""" + CORRECT.replace("def mse_grad(inp, targ):\n", "def mse_grad(inp, targ):\n    _seen.append(targ)\n"
                      "    _spoilt.wait()  # the thread has changed the data before the check looks\n")


FLOODS = """
import os, random, string
os.write(1, "".join(random.choices(string.ascii_letters + string.digits, k=100_000)).encode() + b"\\n")
os.write(2, b"\\x1b[2J\\x1b]0;title\\x07\\n")
for i in range(1000):
    os.write(1 + i % 2, b"line\\n")
"""


def _package(package: str, module: str, source: str) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        (directory / package).mkdir()
        (directory / package / "__init__.py").write_text("")
        (directory / package / f"{module}.py").write_text(source)

    return setup


def _judged(name: str, source: str) -> dict:
    """A case that is no bad input: a FINISHED run, exit 0, its verdict line."""
    return {"run": "FINISHED", "exit_code": 0, "verdict": True, "when": "judged", "setup": _writes(name, source)}


def _in_lin(line: str) -> str:
    return CORRECT.replace("    b.g = out.g.sum(0)", f"    b.g = out.g.sum(0)\n    {line}")


def _learner(code: str, limit_s: float | None = None) -> list[str]:
    """A learner's code, run as impl=user; `limit_s` for the code that loops (the rest keeps the default, 60 s, so
    that a loaded machine cannot make a correct file late)."""
    return ["impl=user", f"impl.code={code}", *([f"impl.time_limit_s={limit_s:g}"] if limit_s else []), *FAST]


def _in_relu(lines: str) -> str:
    """The correct backward, with `lines` run first in relu_grad."""
    return CORRECT.replace("    inp.g = (inp > 0)", f"    {lines}\n    inp.g = (inp > 0)")


def _writes(name: str, text: str) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)

    return setup


def _link(name: str, target: str) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        (directory / target).write_text("password = hunter2\n")
        (directory / name).symlink_to(directory / target)

    return setup


@dataclass
class Case:
    what: str  # the input, as the table names it
    args: list[str]  # after the script's name; `{dir}` is the launch directory
    expected: str  # the one line on stderr starts with this (`{dir}` too)
    run: str = NO_RUN  # the run it leaves: none, or FAILED (the problem is found once the data is read)
    script: str = "run"
    setup: Callable[[Path], None] | None = None  # prepares files in the launch directory
    exit_code: int = USER_ERROR_EXIT
    when: str = "before any compute"
    env: dict[str, str] = field(default_factory=dict)
    stdout: str | None = None  # a file to write stdout to (a full device), instead of a pipe
    traceback: bool = False  # the line is followed by the learner's own frames (theirs, none of the lab's)
    verdict: bool = False  # not bad input but code that tries to change its verdict: `expected` is the verdict line


def _store(directory: Path) -> Path:
    """A real MLflow store in `directory`/mlruns (created by MLflow itself)."""
    from backprop_lab.tracking import lifecycle, store

    uri, artifacts = store.default_store(directory)
    lifecycle.prepare_store(uri, "backprop-lab", artifacts)
    return directory / "mlruns" / "mlflow.db"


def _set_revision(directory: Path, revision: str) -> None:
    with sqlite3.connect(_store(directory)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def _older(directory: Path) -> None:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    _set_revision(directory, script.get_revision(_get_latest_schema_revision()).down_revision)


def _foreign(directory: Path) -> None:
    (directory / "mlruns").mkdir()
    with sqlite3.connect(directory / "mlruns" / "mlflow.db") as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.close()


def _corrupt(directory: Path) -> None:
    (directory / "mlruns").mkdir()
    (directory / "mlruns" / "mlflow.db").write_bytes(os.urandom(4096))


def _deleted(directory: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{_store(directory)}")
    client.delete_experiment(client.get_experiment_by_name("backprop-lab").experiment_id)


def _pickle(obj, sha: bool = True) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        digest = write_pkl_gz(directory / "mnist.pkl.gz", obj)
        (directory / "sha256").write_text(digest if sha else "0" * 64)

    return setup


def _bomb(directory: Path) -> None:
    import gzip
    import hashlib

    path = directory / "mnist.pkl.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        zeros = bytes(1 << 24)
        for _ in range(40):  # 640 MiB of zeros, past the 512 MiB cap, in about 0.6 MB
            f.write(zeros)
    (directory / "sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())


def _evil(directory: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {directory / 'pwned'}",))

    _pickle(((Evil(), None), (None, None), None))(directory)


def _fashion(images: np.ndarray) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        (directory / "fashion").mkdir()
        fashion_dir(directory / "fashion")
        write_idx(directory / "fashion" / "train-images-idx3-ubyte.gz", images)

    return setup


_non_mlflow_server = None


def _finished_run(directory: Path) -> tuple[str, Path]:
    """A FINISHED run in `directory`'s store, made in this process; (run id, its artifact folder)."""
    from helpers import composed

    from backprop_lab.study import pipeline

    result = pipeline.run(composed(*FAST), list(FAST), launch_dir=directory)
    (directory / "run").write_text(result.run.run_id)
    client = MlflowClient(store_uri(directory))
    return result.run.run_id, Path(client.get_run(result.run.run_id).info.artifact_uri.removeprefix("file://"))


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"


def _logged_config(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        _, artifacts = _finished_run(directory)
        config = artifacts / "config" / "config.yaml"
        config.write_text(edit(config.read_text()))

    return setup


def _untagged(directory: Path) -> None:
    run_id, _ = _finished_run(directory)
    MlflowClient(store_uri(directory)).delete_tag(run_id, "config.sha256")


def _device_json(text: str) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        _, artifacts = _finished_run(directory)
        (artifacts / "device.json").write_text(text)

    return setup


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdef", "bcdefg"))


def _serve_non_mlflow(directory: Path) -> None:
    global _non_mlflow_server
    _non_mlflow_server, uri = serve(404, b"<html>not here</html>", "text/html")
    (directory / "server").write_text(uri)


LOCAL_PICKLE = ["data.path={dir}/mnist.pkl.gz", "data.sha256={sha256}", "timing.min_run_time=0.01"]


CASES = [
    # --- the config: the schema and validate(), before torch is imported -------------------------------------------
    Case("unknown group option", ["impl=foo"],
         f"error: impl: no option 'foo'; choose one of {', '.join(options('impl'))}"),
    Case("unknown key", ["data.n_trian=3"], "error: data.n_trian: unknown key; MnistConfig allows name, n_train"),
    Case("wrong type", ["seed=abc"], "error: seed: Value 'abc' of type 'str' could not be converted to Integer"),
    Case("non-positive width", ["model.widths=[784,0,1]"],
         "error: model.widths: must be positive integers, got [784, 0, 1]"),
    Case("non-integer width", ["model.widths=[784,1.5,1]"],
         "error: model.widths[1]: Value '1.5' of type 'float' could not be converted to Integer"),
    Case("first width ≠ features", ["model.widths=[100,80,1]"],
         "error: model.widths[0]: must be 784 (the features of data=mnist), got 100"),
    Case("empty widths", ["model.widths=[]"], "error: model.widths: must be a list of at least 2 widths"),
    Case("a width that cannot be allocated", ["model.widths=[784,100000000,1]"],
         "error: model.widths: [784, 100000000, 1] on mnist needs about"),
    Case("zero rows", ["data.n_train=0"], "error: data.n_train: must be a positive integer or null, got 0"),
    Case("a check stricter than autograd", ["check.factor=0.5"],
         "error: check.factor: must be from 1 to 1000, got 0.5"),
    Case("a check that passes anything", ["check.factor=inf"], "error: check.factor: must be from 1 to 1000, got inf"),
    Case("a check just past its bound", ["check.factor=1000.5"],
         "error: check.factor: must be from 1 to 1000, got 1000.5"),
    Case("more threads than a machine has", ["timing.num_threads=2000"],
         "error: timing.num_threads: must be an integer from 1 to 1024, or null, got 2000"),
    Case("unknown dtype", ["dtype=float16"],
         "error: dtype: Invalid value 'float16', expected one of [float32, float64"),
    Case("a dtype the implementation cannot run", ["dtype=bfloat16", *FAST],
         "error: dtype: impl=module cannot run in bfloat16 on cpu"),
    Case("your own code, unnamed", ["impl=user"],
         "error: impl.code: impl=user runs your own code; name it: impl.code=my_backward.py"),
    Case("your own code, not there", ["impl=user", "impl.code=nope.py", *FAST],
         "error: impl.code: no file '{dir}/nope.py'; write the lesson's lin_grad, relu_grad and mse_grad"),
    Case("your own code, defining none of the lesson's", ["impl=user", "impl.code=empty.py", *FAST],
         "error: impl.code: {dir}/empty.py defines none of Net, Lin, Relu, Mse, lin_grad, relu_grad, mse_grad",
         setup=lambda d: (d / "empty.py").write_text("x = 1\n")),
    # --- a learner's own code, run in a process of its own (tests/test_isolation.py has each class in full) ---
    Case("your own code, a path without .py", _learner("sub/backward"), "error: impl.code: sub/backward is not a .py "
         "file", setup=_writes("sub/backward", CORRECT)),
    Case("your own code, a compiled library", _learner("lib.so"), "error: impl.code: lib.so is not a .py file",
         setup=_writes("lib.so", "\x7fELF")),
    Case("your own code, a link to a file that is not Python", _learner("link.py"),
         "error: impl.code: link.py links to secret.txt, which is not a .py file; refused, not read",
         setup=_link("link.py", "secret.txt")),
    Case("your own code, an interpolation as its name", _learner("${{oc.env:HOME}}.py"),  # {{: format's braces
         "error: impl.code: a file or module name, not an interpolation ('${{oc.env:HOME}}.py'); refused, not "
         "resolved"),
    Case("your own code, a module defining none of the lesson's", _learner("os"),
         "error: impl.code: os defines none of Net, Lin, Relu, Mse, lin_grad, relu_grad, mse_grad"),
    Case("your own code, os._exit(3) at import", _learner("exits.py"),
         "error: {dir}/exits.py: your code ended its own process (exit status 3: os._exit, or a crash) while importing "
         "your file", setup=_writes("exits.py", "import os\nos._exit(3)\n" + CORRECT)),
    Case("your own code, an endless loop at import", _learner("loops.py", limit_s=2),
         "error: {dir}/loops.py: your code ran past impl.time_limit_s=2 s while importing your file",
         setup=_writes("loops.py", "while True:\n    pass\n" + CORRECT)),
    Case("your own code, os._exit(0) in its backward", _learner("exits.py"),
         "error: {dir}/exits.py: your code ended its own process (exit status 0: os._exit, or a crash) while running "
         "your backward (its first call)", run=FAILED, setup=_writes("exits.py", _in_relu("import os; os._exit(0)")),
         when=LEARNER),
    Case("your own code, SIGKILL in its backward", _learner("killed.py"),
         "error: {dir}/killed.py: your code was killed by SIGKILL (out of memory, or killed from outside?) while "
         "running your backward", run=FAILED, when=LEARNER,
         setup=_writes("killed.py", _in_relu("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))),
    Case("your own code, KeyboardInterrupt raised in its backward", _learner("interrupts.py"),
         "error: {dir}/interrupts.py: your code raised KeyboardInterrupt", run=FAILED, when=LEARNER, traceback=True,
         setup=_writes("interrupts.py", _in_relu("raise KeyboardInterrupt"))),
    Case("your own code, a loop that survives SIGTERM in its backward", _learner("stubborn.py", limit_s=2),
         "error: {dir}/stubborn.py: your code ran past impl.time_limit_s=2 s while running your backward",
         run=FAILED, when=LEARNER, setup=_writes("stubborn.py", "import signal\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
         + _in_relu("while True:\n        try:\n            pass\n        except:\n            pass"))),
    Case("your own code, an exception whose message never ends", _learner("endless_str.py", limit_s=2),
         "error: {dir}/endless_str.py: your code ran past impl.time_limit_s=2 s while reporting the error your code "
         "raised while running your backward", run=FAILED, when=LEARNER, setup=_writes("endless_str.py", ENDLESS_STR)),
    Case("your own code, a deep recursion", _learner("deep.py"),
         "error: {dir}/deep.py: your code raised RecursionError", run=FAILED, when=LEARNER, traceback=True,
         setup=_writes("deep.py", "def down(n):\n    return down(n + 1)\n" + _in_relu("down(0)"))),
    Case("your own code, an endless loop while it is timed", _learner("timed.py", limit_s=2),
         "error: {dir}/timed.py: your code ran past impl.time_limit_s=2 s while timing your forward and backward",
         run=FAILED, when="timing", setup=_writes("timed.py", "calls = [0]\n" + _in_relu(
             "calls[0] += 1\n    while calls[0] > 2:\n        pass"))),
    Case("your own code, an allocation past its memory", _learner("hog.py"),
         "error: {dir}/hog.py: your code raised RuntimeError", run=FAILED, when=LEARNER, traceback=True,
         setup=_writes("hog.py", "import torch\n" + _in_relu("torch.empty(10**10)"))),
    # code that tries to change what is judged, or the lab: it cannot, and gets the verdict its values earn
    Case("your own code, a tensor subclass that lies in comparisons", _learner("lies.py"),
         "verdict: gradients WRONG from node lin1", **_judged("lies.py", LYING)),
    Case("your own code, patching the lab's checker", _learner("cheats.py"),
         "verdict: gradients WRONG from node w2", **_judged("cheats.py", CHEATS + _in_lin("w.g = w.g * 2"))),
    Case("your own code, changing torch's defaults, seed and threads", _learner("defaults.py"),
         "verdict: gradients ok at every node", **_judged("defaults.py", "import torch\n"
         "torch.set_default_dtype(torch.float64)\ntorch.set_num_threads(1)\ntorch.manual_seed(7)\n" + CORRECT)),
    Case("your own code, os.chdir, closing stdout, an atexit exit, a fork at import", _learner("meddles.py"),
         "verdict: gradients ok at every node", **_judged("meddles.py", "import atexit, os, sys, time\n"
         "os.chdir('/')\natexit.register(lambda: os._exit(0))\nif os.fork() == 0:\n    time.sleep(30)\n"
         "sys.stdout.close()\nos.close(1)\n" + CORRECT)),
    Case("your own code, a module of a package, looping in its backward", _learner("learner_pkg.endless", limit_s=2),
         "error: learner_pkg.endless: your code ran past impl.time_limit_s=2 s while running your backward",
         run=FAILED, when=LEARNER, setup=_package("learner_pkg", "endless", _in_relu("while True:\n        pass"))),
    Case("your own code, a 100 KB line of letters, escapes and 1,000 lines straight to fd 1 and 2",
         _learner("floods.py"), "verdict: gradients ok at every node", **_judged("floods.py", FLOODS + CORRECT)),
    Case("your own code, a thread that keeps changing the data", _learner("spoils.py"),
         "error: {dir}/spoils.py: your code changed y in place", run=FAILED, when=LEARNER,
         setup=_writes("spoils.py", SPOILS)),
    Case("your own code, a memory limit torch cannot start in", ["impl=user", "impl.code=x.py",
                                                                "impl.memory_limit_gib=0.5"],
         "error: impl.memory_limit_gib: must be null (3/4 of the free memory) or at least 1 GiB"),
    Case("your own code, no time at all", ["impl=user", "impl.code=x.py", "impl.time_limit_s=0"],
         "error: impl.time_limit_s: must be a finite number of seconds > 0, got 0.0"),
    Case("unknown bug", ["bug=nope"], "error: bug: no option 'nope'; choose one of bias_over_features"),
    Case("a bug in another implementation", ["bug=relu_unmasked", "impl=lean", *FAST],
         "error: bug.name: relu_unmasked is put into impl=functional's backward; got impl=lean"),
    Case("a bug that needs a square layer", ["bug=weight_not_transposed", "impl=functional", *FAST],
         "error: bug.name: weight_not_transposed needs a square layer"),
    Case("non-finite ReLU shift", ["model.relu_shift=nan"], "error: model.relu_shift: must be a finite number"),
    Case("an init gain of zero", ["init.gain=0"], "error: init.gain: must be a finite number > 0, got 0"),
    Case("unknown objective", ["objective=speed"],
         "error: objective: Invalid value 'speed', expected one of [none, last_hidden_unit_std"),
    Case("a dry run outside a multirun", ["sweep.dry_run=true"],
         "error: sweep.dry_run: must be false outside a multirun (-m): one run has nothing to list or reuse, got True"),
    Case("a search without an objective", ["-m", "hydra/sweeper=search", *FAST],
         "error: objective: none; a search minimizes one of last_hidden_unit_std"),
    Case("a search's dry run", ["-m", "+experiment=shift_search", "sweep.dry_run=true", *FAST],
         "error: sweep.dry_run: a search's trials depend on its results"),
    Case("endless timing", ["timing.min_run_time=inf"],
         "error: timing.min_run_time: must be > 0 and at most 600 seconds, got inf"),
    Case("negative seed", ["seed=-1"], "error: seed: must be an integer from 0 to 2**64 - 1, got -1"),
    Case("seed past 64 bits", [f"seed={2**64}"], "error: seed: must be an integer from 0 to 2**64 - 1"),
    Case("empty experiment name", ["tracking.experiment=''"],
         "error: tracking.experiment: must be a name of 1 to 500 characters"),
    Case("over-long experiment name", ["tracking.experiment=" + "x" * 501],
         "error: tracking.experiment: must be a name of 1 to 500 characters"),
    Case("unknown device", ["device=gpu"], "error: device: Invalid value 'gpu', expected one of [auto, cpu, cuda]"),
    Case("device=cuda without CUDA", ["device=cuda"],
         "error: device: cuda was asked for but torch.cuda.is_available() is False"),
    Case("missing MNIST file", ["data.path=/no/such/mnist.pkl.gz"],
         "error: data.path: no file '/no/such/mnist.pkl.gz'; give a local mnist.pkl.gz, or null to fetch it"),
    Case("data.path that is not a regular file", ["data.path={dir}/fifo"],
         "error: data.path: '{dir}/fifo' is not a regular file; give a local mnist.pkl.gz, or null to fetch it",
         setup=lambda d: os.mkfifo(d / "fifo")),
    Case("another file's hash, without its file", [f"data.sha256={'0' * 64}"],
         "error: data.sha256: names another file than the course's mnist.pkl.gz, the one fetched when data.path is "
         "null; set data.path to the file it names"),
    Case("missing Fashion-MNIST directory", ["data=fashion_mnist", "data.path=/no/such/dir"],
         "error: data.path: no directory '/no/such/dir'; Fashion-MNIST's idx files come with Debian's package"),
    # --- the tracking URI and the store: before any compute -------------------------------------------------------
    Case("malformed URI", ["tracking.uri=foo://bar"],
         "error: tracking.uri: must be null (the default store), or a URI of sqlite, postgresql, mysql"),
    Case("an override Hydra cannot parse", ["tracking.uri=http://[::1"],
         "error: tracking.uri=http://[::1: not an override Hydra can parse (mismatched input '[' expecting <EOF>)"),
    Case("unparsable URI", ["tracking.uri='http://[::1'"],
         "error: tracking.uri: cannot parse 'http://[::1' (Invalid IPv6 URL); fix the URI"),
    Case("file store", ["tracking.uri=file:///tmp/mlruns"],
         "error: tracking.uri: 'file:///tmp/mlruns' is a file store, which MLflow 3.13+ refuses"),
    Case("in-memory store", ["tracking.uri=sqlite:///:memory:"],
         "error: tracking.uri: 'sqlite:///:memory:' is an in-memory store, which keeps nothing after the process"),
    Case("unreachable server", ["tracking.uri=http://127.0.0.1:9"],
         "error: tracking server http://127.0.0.1:9 does not answer (ConnectionError"),
    Case("a server that is not MLflow", ["tracking.uri={server}"], "error: tracking server http://127.0.0.1:",
         setup=_serve_non_mlflow),
    Case("unreachable database", ["tracking.uri=postgresql://u:pw@127.0.0.1:9/db"],
         "error: tracking database postgresql://u:***@127.0.0.1:9/db does not answer at 127.0.0.1:9"),
    Case("database driver not installed", ["tracking.uri=mssql://u:pw@127.0.0.1/db"],
         "error: tracking store mssql://u:***@127.0.0.1/db needs the pyodbc module; pip install pyodbc"),
    Case("sqlite path that is a directory", ["tracking.uri=sqlite:///{dir}"],
         "error: {dir}: is a directory, not an sqlite file"),
    Case("store directory that cannot be written", ["tracking.uri=sqlite:////proc/no/mlflow.db"],
         "error: /proc/no: cannot write the tracking store"),
    Case("corrupt sqlite store", [], "error: {dir}/mlruns/mlflow.db: not a readable sqlite database", setup=_corrupt),
    Case("sqlite file of another program", [], "error: {dir}/mlruns/mlflow.db: not an MLflow tracking store "
         "(it holds tables orders)", setup=_foreign),
    Case("store of a newer MLflow", [], "error: {dir}/mlruns/mlflow.db: written by a newer MLflow (schema 0123456789ab",
         setup=lambda d: _set_revision(d, "0123456789ab")),
    Case("store of an older MLflow", [], "error: {dir}/mlruns/mlflow.db: schema ", setup=_older),
    Case("deleted experiment", [], "error: tracking.experiment: 'backprop-lab' was deleted in sqlite:///",
         setup=_deleted),
    Case("Hydra's output directory under a file", ["hydra.run.dir={dir}/afile/out"], "error: Not a directory: ",
         setup=lambda d: (d / "afile").write_text("")),
    Case("an empty sweep", ["-m", "seed=range(0)", *FAST],
         "error: the sweep has no jobs (seed=range(0): sweeps no value; give it at least one)"),
    Case("a search of no trials", ["-m", "+experiment=shift_search", "hydra.sweeper.n_trials=0", *FAST],
         "error: the sweep has no jobs (hydra.sweeper.n_trials: 0; a search needs at least 1 trial)"),
    Case("an inverted search range", ["-m", "hydra/sweeper=search", "objective=last_hidden_unit_std",
                                      "init.gain=interval(2.0,0.5)", *FAST],
         "error: init.gain=interval(2.0,0.5): an interval runs from low to high; write interval(0.5, 2.0)"),
    Case("a dry run in a deleted experiment", ["-m", "init=xavier,normal", "sweep.dry_run=true", *FAST],
         "error: tracking.experiment: 'backprop-lab' was deleted in sqlite:///", setup=_deleted),
    Case("stdout on a full device", [*FAST], "error: stdout: cannot print the summary (No space left on device); run ",
         stdout="/dev/full", run="FINISHED", when="after the run, logged in full"),
    Case("a sweep's directory under a file", ["-m", "impl=functional,nn", "hydra.sweep.dir={dir}/afile/m"],
         "error: hydra.sweep.dir: cannot create {dir}/afile/m", setup=lambda d: (d / "afile").write_text("")),
    # --- data files: found once the data is read, the run ends FAILED ----------------------------------------------
    Case("more rows than the data has", [*LOCAL_PICKLE, "data.n_train=60000"],
         "error: data.n_train: 60000 is more than the 20 rows of mnist", run=FAILED, setup=_pickle(tiny_mnist()),
         when="reading the data"),
    Case("a file that fails its SHA-256", LOCAL_PICKLE, "error: {dir}/mnist.pkl.gz: SHA-256 is", run=FAILED,
         setup=_pickle(tiny_mnist(), sha=False), when="reading the data"),
    Case("a pickle asking for a forbidden global", LOCAL_PICKLE,
         "error: {dir}/mnist.pkl.gz: pickle asks for forbidden global posix.system; only numpy arrays are admitted",
         run=FAILED, setup=_evil, when="reading the data"),
    Case("3-D arrays in the pickle", LOCAL_PICKLE, "error: {dir}/mnist.pkl.gz: x_train has shape (20, 28, 28)",
         run=FAILED, setup=_pickle(tuple((x.reshape(-1, 28, 28), y) for x, y in tiny_mnist())),
         when="reading the data"),
    Case("a gzip that decompresses to gigabytes", LOCAL_PICKLE,
         "error: {dir}/mnist.pkl.gz: decompresses to more than 512 MiB", run=FAILED, setup=_bomb,
         when="reading the data"),
    Case("Fashion-MNIST images that are not 28×28", ["data=fashion_mnist", "data.path={dir}/fashion",
                                                     "timing.min_run_time=0.01"],
         "error: {dir}/fashion/train-images-idx3-ubyte.gz: images are 27x28", run=FAILED,
         setup=_fashion(np.zeros((12, 27, 28))), when="reading the data"),
    Case("data.cache_dir that is a file", ["data.cache_dir={dir}/afile", "timing.min_run_time=0.01"],
         "error: {dir}/afile: cannot create the MNIST cache directory", run=FAILED,
         setup=lambda d: (d / "afile").write_text(""), when="reading the data"),
    # --- the other scripts ---------------------------------------------------------------------------------------
    Case("bench: unknown option", ["impl=nope"], "error: impl: no option 'nope'; choose one of", script="bench"),
    Case("bench: non-positive width", ["model.widths=[784,0,1]"],
         "error: model.widths: must be positive integers, got [784, 0, 1]", script="bench"),
    Case("report: --out is a file", ["--out", "{dir}/afile"], "error: --out: {dir}/afile is a file", script="report",
         setup=lambda d: (d / "afile").write_text("")),
    Case("report: unreachable server", ["--tracking-uri", "http://bob:pw@127.0.0.1:9"],
         "error: tracking server http://bob:***@127.0.0.1:9 does not answer", script="report"),
    Case("report: no sweep in the store", [], "error: no sweep found in the store", script="report", setup=_store),
    Case("rerun: unknown run id", ["0123456789abcdef"], "error: run 0123456789abcdef: not found in sqlite:///",
         script="rerun", setup=_store),
    Case("rerun: its logged config edited in the store", ["{run}"],
         "error: run {run}: its config/config.yaml does not hash to its config.sha256 tag", script="rerun",
         setup=_logged_config(lambda t: t.replace("factor: 8.0", "factor: 999")), run="FINISHED"),
    Case("rerun: a run without its config.sha256 tag", ["{run}"],
         "error: run {run}: it has no config.sha256 tag to check its config/config.yaml against", script="rerun",
         setup=_untagged, run="FINISHED"),
    Case("rerun: a YAML alias bomb as the logged config", ["{run}"],
         "error: run {run}: config/config.yaml: a YAML anchor or alias at line 1", script="rerun",
         setup=_logged_config(lambda t: ALIAS_BOMB), run="FINISHED"),
    Case("rerun: 5,000 nested brackets as the logged config", ["{run}"],
         "error: run {run}: config/config.yaml: nested deeper than 16 levels", script="rerun",
         setup=_logged_config(lambda t: "[" * 5000 + "]" * 5000), run="FINISHED"),
    Case("rerun: a logged config over 1 MiB", ["{run}"], "error: run {run}: config/config.yaml: 1,0", script="rerun",
         setup=_logged_config(lambda t: t + "#" * (1 << 20)), run="FINISHED"),
    Case("rerun: a device.json that is not JSON", ["{run}"],
         "error: run {run}: device.json is not the JSON object a run logs", script="rerun",
         setup=_device_json("{not json" + "[" * 100_000), run="FINISHED"),
    Case("report: a store that is not there", ["--tracking-uri", "sqlite:///{dir}/nope/mlflow.db"],
         "error: {dir}/nope/mlflow.db: no tracking store there", script="report"),
    Case("rerun: corrupt store", ["0123456789abcdef"], "error: {dir}/mlruns/mlflow.db: not a readable sqlite database",
         script="rerun", setup=_corrupt),
]  # fmt: skip


def prepare(case: Case, directory: Path) -> list[str]:
    """The case's files made in `directory`, and its arguments with the placeholders filled in."""
    if case.setup:
        case.setup(directory)
    values = {"dir": str(directory)}
    if (directory / "sha256").exists():
        values["sha256"] = (directory / "sha256").read_text()
    if (directory / "server").exists():
        values["server"] = (directory / "server").read_text()
    if (directory / "run").exists():
        values["run"] = (directory / "run").read_text()
    return [arg.format(**values) for arg in case.args]


def run_case(case: Case, directory: Path, timeout: float = 120,
             fresh: bool = False) -> tuple[subprocess.CompletedProcess, float]:  # fmt: skip
    """What the case's command did, and its seconds: in a fresh interpreter for the table, whose times include the
    imports a user waits for; a fork of the preloaded one (tests/preloaded.py) for the test, which checks the line."""
    args = prepare(case, directory)
    stdout = open(case.stdout, "w") if case.stdout else subprocess.PIPE  # noqa: SIM115 (closed below)
    started = time.perf_counter()
    try:
        command = [sys.executable, str(ROOT / "scripts" / f"{case.script}.py"), *args]
        done = (subprocess.run if fresh else preloaded.run)(command, cwd=directory, stdout=stdout,
                                                            stderr=subprocess.PIPE, text=True, timeout=timeout,
                                                            env=os.environ | case.env)  # fmt: skip
    finally:
        if case.stdout:
            stdout.close()
    return done, time.perf_counter() - started


def verdict_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("verdict: ")]


def markdown_table() -> str:
    import tempfile

    lines = ["| input | script | exit | seconds | the line on stderr | when | run |", "|---|---|---|---|---|---|---|"]
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            done, seconds = run_case(case, Path(tmp).resolve(), fresh=True)
            lines = (verdict_lines(done) if case.verdict else done.stderr.strip().splitlines()) or ["(nothing)"]
            line = lines[0] if case.traceback else lines[-1]
            line = line.replace(str(Path(tmp).resolve()), "DIR").replace("|", "\\|")
            line = re.sub(r"\b[0-9a-f]{32}\b", "RUN", line).replace(str(ROOT / ".venv"), ".venv")  # a run id, a path
        lines.append(f"| {case.what} | {case.script} | {done.returncode} | {seconds:.1f} | `{line}` | {case.when} | "
                     f"{case.run} |")  # fmt: skip
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table())
