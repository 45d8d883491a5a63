"""The judge apart from the judged: a learner's code runs in a process of its own, so nothing it does changes a
verdict, another submission's result, the lab's process or its time limit. Each test is a hostile or careless
learner's file, checked as the lab checks it (backward.run_check, a Submission's requests); the entry script's side
(exit statuses, run statuses, a teacher's sweep) is in test_isolation_sweep.py and the catalogue of bad input."""

from __future__ import annotations

import os
import textwrap
import time

import pytest
import torch
from bad_input import LYING, SPOILS
from helpers import small_problem
from test_user_code import CORRECT, LIN, MSE, NET, RELU, WIDTHS

from backprop_lab import isolation
from backprop_lab.core import redaction
from backprop_lab.core.errors import ConfigError, UserCodeError
from backprop_lab.impls.common import layer_widths, node_shapes
from backprop_lab.isolation import output, processes, submission
from backprop_lab.study import backward, grad_check

pytestmark = pytest.mark.slow  # each starts a learner's process (forked from the fork server)

BUGGY = LIN.replace("inp.t() @ out.g", "2 * inp.t() @ out.g") + RELU + MSE  # w.g twice the truth


def write(tmp_path, source: str, name: str = "my_backward.py"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def check(path, limit: float = 60.0, n: int = 60, dtype=torch.float64):
    params, x, y = small_problem(WIDTHS, n=n, dtype=dtype)
    return backward.run_check(str(path), params, x, y, 0.5, False, 8.0, time_limit_s=limit)


def at_relu(lines: str) -> str:
    """The correct functions, with `lines` run first in relu_grad."""
    return CORRECT.replace("    inp.g = (inp > 0)", lines + "    inp.g = (inp > 0)")


def verdict(checked) -> str:
    return grad_check.overall(checked.checks)


# --- 1. a wrong gradient is never judged ok ------------------------------------------------------------------------

def test_a_tensor_subclass_that_lies_in_comparisons_is_judged_on_its_values(tmp_path):
    checked = check(write(tmp_path, LIN + MSE + LYING))  # its relu_grad, three times the truth
    assert verdict(checked) == "wrong" and checked.mistake.kind == "scale", checked.mistake
    assert grad_check.first_divergent(checked.checks) == "lin2"
    assert all(type(t) is torch.Tensor for t in checked.elementwise.values())


CHEATER = """
import backprop_lab.study.grad_check as gc, backprop_lab.study.diagnosis as dg, backprop_lab.study.backward as bw
gc.first_divergent = lambda checks: "none"
gc.overall = lambda checks: "ok"
gc.check_node = lambda *a, **k: None
bw.judge = lambda *a, **k: None
dg.diagnose = lambda *a, **k: None
""" + BUGGY


def test_a_file_that_patches_the_checker_changes_neither_its_verdict_nor_the_next_ones(tmp_path):
    assert verdict(check(write(tmp_path, CHEATER, "cheater.py"))) == "wrong"
    assert verdict(check(write(tmp_path, BUGGY, "next.py"))) == "wrong"
    assert grad_check.overall.__module__ == "backprop_lab.study.grad_check"  # the lab's own, untouched


def test_each_learners_helpers_are_their_own(tmp_path):
    write(tmp_path, "def t(w):\n    return w.t()\n", "alice/helpers.py")
    write(tmp_path, "def t(w):\n    return 2 * w.t()\n", "bob/helpers.py")
    uses = "from helpers import t\n" + LIN.replace("w.t()", "t(w)") + RELU + MSE
    alice, bob = write(tmp_path, uses, "alice/alice.py"), write(tmp_path, uses, "bob/bob.py")
    assert verdict(check(alice)) == "ok"
    checked = check(bob)
    assert verdict(checked) == "wrong" and grad_check.first_divergent(checked.checks) == "act2"


# --- 2. the exit status and the run statuses are the lab's ---------------------------------------------------------

@pytest.mark.parametrize("source, says", [
    (CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n    import os; os._exit(0)"),
     r"ended its own process \(exit status 0: os._exit, or a crash\) while running your backward \(its first call\)"),
    ("import os\nos._exit(3)\n" + CORRECT, r"ended its own process \(exit status 3.*\) while importing your file"),
    (CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n    import os, signal; "
                                                "os.kill(os.getpid(), signal.SIGKILL)"),
     r"was killed by SIGKILL \(out of memory, or killed from outside\?\) while running your backward"),
    (CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n    raise KeyboardInterrupt"),
     r"your code raised KeyboardInterrupt"),
    ("import sys\nsys.exit(0)\n" + CORRECT, "your code raised SystemExit"),
])  # fmt: skip
def test_however_a_learners_process_ends_the_lab_says_so_in_its_own_error(tmp_path, source, says):
    with pytest.raises(UserCodeError, match=says) as raised:
        check(write(tmp_path, source))
    assert str(raised.value).startswith(str(tmp_path / "my_backward.py"))


def test_a_fork_at_import_leaves_one_answer_and_no_process_behind(tmp_path):
    pids = tmp_path / "pids"
    forks = f"""
import os, time
if os.fork() == 0:
    open({str(pids)!r} + ".tmp", "w").write(f"{{os.getpid()}}\\n")
    os.rename({str(pids)!r} + ".tmp", {str(pids)!r})
    time.sleep(300)
while not os.path.exists({str(pids)!r}):  # the copy has written its pid before the check goes on
    time.sleep(0.01)
"""
    path = write(tmp_path, forks + CORRECT)
    assert verdict(check(path)) == "ok"
    time.sleep(0.2)
    (pid,) = map(int, pids.read_text().split())
    assert not _alive(pid)  # the learner's process group is stopped with the child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"  # a zombie is gone


# --- 3. no submission can change another's result, nor the lab --------------------------------------------------

MEDDLER = """
import os, sys, threading, torch
os.chdir("/")
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
torch.manual_seed(123)
torch.Tensor.__matmul__ = lambda a, b: torch.zeros(())
for name in [n for n in sys.modules if n.startswith("backprop_lab")]:
    sys.modules[name] = None
sys.stdout.close()
os.close(1)
""" + CORRECT


def test_what_a_file_does_to_its_process_reaches_neither_the_lab_nor_the_next_file(tmp_path):
    before = (os.getcwd(), torch.get_default_dtype(), torch.get_num_threads(), torch.Tensor.__matmul__)
    rng = torch.get_rng_state()
    with pytest.raises(UserCodeError):  # its own matmul is broken: its forward raises, in its own process
        check(write(tmp_path, MEDDLER, "meddler.py"))
    assert (os.getcwd(), torch.get_default_dtype(), torch.get_num_threads(), torch.Tensor.__matmul__) == before
    assert torch.equal(torch.get_rng_state(), rng)
    assert verdict(check(write(tmp_path, CORRECT, "next.py"))) == "ok"


def test_a_learners_thread_changing_the_shared_data_changes_only_its_own_copy(tmp_path):
    params, x, y = small_problem(WIDTHS, n=60)
    kept = x.clone(), y.clone()
    with pytest.raises(UserCodeError, match="changed y in place"):
        backward.run_check(str(write(tmp_path, SPOILS, "mutator.py")), params, x, y, 0.5, False, 8.0)
    assert torch.equal(x, kept[0]) and torch.equal(y, kept[1])  # the lab's data, as it was
    assert verdict(backward.run_check(str(write(tmp_path, CORRECT, "next.py")), params, x, y, 0.5, False, 8.0)) == "ok"


# --- 4. impl.time_limit_s bounds everything the learner's code does -----------------------------------------------

ENDLESS = "    while True:\n        pass\n"


@pytest.mark.parametrize("source, stage", [
    ("while True:\n    pass\n" + CORRECT, "importing your file"),
    (CORRECT.replace("    inp.g = (inp > 0)", "    while True:\n        try:\n            pass\n        except:\n"
                                                "            pass\n    inp.g = (inp > 0)"), "running your backward"),
    ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
     + CORRECT.replace("    inp.g = (inp > 0)", ENDLESS + "    inp.g = (inp > 0)"), "running your backward"),
    ("import os\nwhile True:\n    os.write(1, b'\\n' * 65536)\n" + CORRECT, "importing your file"),  # a flood to relay
    ("class Endless(Exception):\n    def __str__(self):\n        while True:\n            pass\n"
     + CORRECT.replace("    inp.g = (inp > 0)", "    raise Endless()\n    inp.g = (inp > 0)"),
     "reporting the error your code raised while running your backward"),
])  # fmt: skip
def test_the_time_limit_stops_the_learners_process_whatever_it_does(tmp_path, source, stage):
    started = time.monotonic()
    with pytest.raises(UserCodeError, match=r"ran past impl.time_limit_s=1 s while " + stage) as raised:
        check(write(tmp_path, source), limit=1.0)
    assert time.monotonic() - started < 20 and "its process was stopped" in str(raised.value)


def test_a_loop_in_the_timing_stage_is_stopped_too(tmp_path):
    counted = CORRECT.replace("def mse_grad(inp, targ):\n", "calls = [0]\ndef mse_grad(inp, targ):\n"
                              "    calls[0] += 1\n    while calls[0] > 2:\n        pass\n")  # fmt: skip
    params, x, y = small_problem(WIDTHS, n=60)
    with isolation.open_submission(str(write(tmp_path, counted)), None, 1.0) as code:
        due = node_shapes(layer_widths(params), x.shape[0], input_grad=True)
        code.check(params, x, y, 0.5, False, due, 2048)  # its first two calls pass
        with pytest.raises(UserCodeError, match=r"ran past impl.time_limit_s=1 s while timing your forward"):
            code.time(0.5, False, True, 0.01, 1)


def test_a_deep_recursion_is_the_learners_traceback(tmp_path):
    deep = "def down(n):\n    return down(n + 1)\n" + at_relu("    down(0)\n")
    with pytest.raises(UserCodeError, match="your code raised RecursionError") as raised:
        check(write(tmp_path, deep))
    text = str(raised.value)
    assert "in down" in text and "backprop_lab/" not in text.replace(str(tmp_path), "")
    assert "[Previous line repeated" in text and len(text) < 20_000


def test_the_learners_whole_process_group_is_stopped(tmp_path):
    pid_file = tmp_path / "sleeper"
    path = write(tmp_path, f"import subprocess\np = subprocess.Popen(['sleep', '300'])\nopen({str(pid_file)!r}, 'w')"
                           ".write(str(p.pid))\nwhile True:\n    pass\n")  # fmt: skip
    with pytest.raises(UserCodeError, match="ran past"):
        check(path, limit=1.0)
    time.sleep(0.2)
    assert not _alive(int(pid_file.read_text()))


FORGER = """
from backprop_lab.isolation import wire
_send = wire.send


def send(sock, message, fds=()):  # the child's replies, rewritten on their way to the lab
    if "loss" in message:
        message = dict(message, loss=10**400)
    if "timing" in message:
        message = {"timing": dict(message["timing"], threads=10**400)}
    return _send(sock, message, fds)


wire.send = send
"""


def test_a_reply_the_learners_code_forges_is_its_own_failure_never_the_labs(tmp_path):
    with pytest.raises(UserCodeError, match="handed back what the lab cannot read"):
        check(write(tmp_path, FORGER + CORRECT))
    params, x, y = small_problem(WIDTHS, n=60)
    timing_only = FORGER.replace('if "loss" in message:', 'if False:')
    with isolation.open_submission(str(write(tmp_path, timing_only + CORRECT, "timing.py")), None, 60.0) as code:
        code.check(params, x, y, 0.5, False, node_shapes(layer_widths(params), x.shape[0], input_grad=True), 2048)
        with pytest.raises(UserCodeError, match="handed back what the lab cannot read"):
            code.time(0.5, False, True, 0.01, 1)


def test_the_labs_own_errors_raised_by_the_learners_code_are_their_traceback(tmp_path):
    raises = at_relu("    raise ConfigError('model.widths: forged')\n")
    forged = "from backprop_lab.core.errors import ConfigError\n" + raises
    with pytest.raises(UserCodeError, match="your code raised ConfigError: model.widths: forged") as raised:
        check(write(tmp_path, forged))
    assert str(raised.value).startswith(str(tmp_path / "my_backward.py"))


# --- 5. every way in gets the same protection -------------------------------------------------------------------

def test_a_module_gets_what_a_file_gets(tmp_path, monkeypatch):
    write(tmp_path, "", "learner_pkg/__init__.py")
    write(tmp_path, at_relu(ENDLESS), "learner_pkg/endless.py")
    write(tmp_path, at_relu("    1 / 0\n"), "learner_pkg/raises.py")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserCodeError, match="ran past impl.time_limit_s=1 s"):
        check("learner_pkg.endless", limit=1.0)
    with pytest.raises(UserCodeError, match="^learner_pkg.raises: your code raised ZeroDivisionError") as raised:
        check("learner_pkg.raises")
    assert "learner_pkg/raises.py" in str(raised.value) and "src/backprop_lab" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"^impl.code: os defines none of Net, Lin"):
        check("os")
    with pytest.raises(ConfigError, match=r"^impl.code: no module 'learner_pkg.nope'"):
        check("learner_pkg.nope")


@pytest.mark.parametrize("name, content, says", [
    ("subdir/backward", CORRECT, r"is not a .py file"),
    ("lib.so", "\x7fELF", r"is not a .py file"),
    ("link.py", None, r"links to secret.txt, which is not a .py file; refused, not read"),
    ("m\x1b[2Jred.py", CORRECT, r"^impl.code: 'm\?\[2Jred.py' has a control character in its name"),
])  # fmt: skip
def test_a_file_that_is_not_python_is_one_line_and_never_read(tmp_path, monkeypatch, name, content, says):
    if content is None:
        write(tmp_path, "password = hunter2\n", "secret.txt")
        (tmp_path / name).symlink_to(tmp_path / "secret.txt")
    else:
        write(tmp_path, content, name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=says) as raised:
        check(name)
    assert "hunter2" not in str(raised.value) and "\n" not in str(raised.value)


# --- 7. output is bounded, safe, and linear ----------------------------------------------------------------------

def test_prints_straight_to_the_descriptors_are_bounded_cut_and_redacted(tmp_path, capsys):
    noisy = ("import os\nos.write(1, b'x' * 100_000 + b'\\n')\n"
             "os.write(2, b'\\x1b[2Jcleared \\xc2\\x9d \\xe2\\x80\\xae\\n')\n"
             "print('http://alice:s3cr3tpass@example.org/x')\nfor i in range(1000):\n    os.write(1, b'line\\n')\n"
             + CORRECT)  # fmt: skip
    assert verdict(check(write(tmp_path, noisy))) == "ok"
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines[0]) < output.MAX_LINE_CHARS + 20 and lines[0].endswith("(cut)")
    assert "\x1b" not in out and "| ?[2Jcleared ? ?" in out  # C1 controls and a bidirectional override too
    assert "s3cr3tpass" not in out and "alice:***@" in out
    assert out.count("line\n") == output.MAX_PRINTED_LINES - 3 and "are not shown" in lines[-1]


def test_the_redactor_is_linear_in_what_it_reads():
    """A megabyte of letters and digits, which the old pattern took hours over (40 KB: 17 s), within seconds."""
    import random
    import string

    text = "".join(random.Random(0).choices(string.ascii_letters + string.digits, k=1_000_000))
    started = time.monotonic()
    assert redaction.redact(text + " http://u:pw123456@h/").endswith("http://u:***@h/")
    assert time.monotonic() - started < 10


def test_a_learners_process_sees_none_of_the_labs_secrets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MY_API_TOKEN", "tok-5ecret-value")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    spy = "import os\nprint('seen', os.environ.get('MY_API_TOKEN'), os.environ.get('MLFLOW_TRACKING_URI'))\n" + CORRECT
    monkeypatch.setattr(processes, "_starter", None)  # a fork server of its own, started with this environment
    try:
        with submission.Submission(str(write(tmp_path, spy)), None, 60.0, None).open():
            pass
    finally:
        processes.starter().close()
    assert "seen None None" in capsys.readouterr().out


# --- 8. resources -------------------------------------------------------------------------------------------------

def test_an_allocation_past_the_memory_limit_is_the_learners_error_and_the_next_file_runs(tmp_path):
    hog = CORRECT.replace("    inp.g = (inp > 0)", "    torch.empty(10**10)\n    inp.g = (inp > 0)")
    with pytest.raises(UserCodeError, match=r"your code raised RuntimeError") as raised:
        check(write(tmp_path, "import torch\n" + hog, "hog.py"))
    assert "impl.memory_limit_gib" in str(raised.value)
    shared = "import mmap\nm = mmap.mmap(-1, 3 << 30)\n" + CORRECT  # shared memory counts too
    with pytest.raises(UserCodeError, match=r"your code raised OSError: \[Errno 12\] Cannot allocate memory"):
        isolation.open_submission(str(write(tmp_path, shared, "shared.py")), None, 60.0, 1.5).close()
    with pytest.raises(UserCodeError, match=r"your code raised RuntimeError"):  # 4 GiB, within what is free here,
        big = write(tmp_path, "import torch\nbig = torch.ones(2**30)\n" + CORRECT, "big.py")
        with isolation.open_submission(str(big), None, 60.0, 2.0):
            pass  # but past the 2 GiB this one was given
    assert verdict(check(write(tmp_path, CORRECT, "next.py"))) == "ok"


def test_the_memory_limit_a_run_states_is_the_one_it_ran_under(tmp_path):
    with isolation.open_submission(str(write(tmp_path, CORRECT)), None, 60.0, 1.5) as code:
        assert code.memory_limit_gib == 1.5
    with isolation.open_submission(str(write(tmp_path, CORRECT)), None, 60.0, None) as code:
        assert code.memory_limit_gib >= 1.0


def test_the_judge_checks_what_comes_back_before_judging(tmp_path):
    """A gradient of another dtype, on another device, or not a tensor at all is the learner's line, not a crash."""
    wrong_dtype = CORRECT.replace("    w.g = inp.t() @ out.g", "    w.g = (inp.t() @ out.g).half()")
    with pytest.raises(UserCodeError, match="gradient at w3 is torch.float16; the run's dtype is torch.float64"):
        check(write(tmp_path, wrong_dtype))
    listed = NET.replace("return dict(zip(self.params, grads))", "return {k: g.tolist() for k, g in zip(self.params, "
                                                                 "grads)}")  # fmt: skip
    with pytest.raises(UserCodeError, match=r"your backward gave w1 = list, not a tensor"):
        check(write(tmp_path, listed))
