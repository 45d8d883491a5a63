"""A learner's own backward, as a file, through the door the lab's own implementations use: correct code in each of
the three styles is ok at every node; the bank's mistakes, written as a learner writes them, are caught at their
node; partial code is judged on what it gives; and code that breaks gets its own traceback, never the lab's."""

from __future__ import annotations

import textwrap

import pytest
import torch
from helpers import FAST, cli, runs_in, small_problem

from backprop_lab import isolation
from backprop_lab.core.errors import ConfigError, UserCodeError
from backprop_lab.isolation import output
from backprop_lab.study import backward, grad_check, verdicts

LIN = """
def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)
"""
RELU = """
def relu_grad(inp, out):
    inp.g = (inp > 0).float() * out.g
"""
MSE = """
def mse_grad(inp, targ):
    inp.g = 2. * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]
"""
CORRECT = LIN + RELU + MSE

CLASSES = """
class Module():
    def __call__(self, *args):
        self.args = args
        self.out = self.forward(*args)
        return self.out

    def backward(self):
        self.bwd(self.out, *self.args)


class Relu(Module):
    def __init__(self, shift=0.5):
        self.shift = shift

    def forward(self, inp):
        return inp.clamp_min(0.) - self.shift

    def bwd(self, out, inp):
        inp.g = (inp > 0).float() * out.g


class Lin(Module):
    def __init__(self, w, b):
        self.w, self.b = w, b

    def forward(self, inp):
        return inp @ self.w + self.b

    def bwd(self, out, inp):
        inp.g = out.g @ self.w.t()
        self.w.g = inp.t() @ out.g
        self.b.g = out.g.sum(0)


class Mse(Module):
    def forward(self, inp, targ):
        return (inp.squeeze() - targ).pow(2).mean()

    def bwd(self, out, inp, targ):
        inp.g = 2 * (inp.squeeze() - targ).unsqueeze(-1) / targ.shape[0]
"""

NET = """
import torch


class Net:
    def __init__(self, params, shift):
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        self.shift = shift

    def forward(self, x, targ):
        n = len(self.params) // 2
        z = x
        for i in range(1, n + 1):
            z = z @ self.params[f"w{i}"] + self.params[f"b{i}"]
            if i < n:
                z = z.clamp_min(0) - self.shift
        self.loss = (z.squeeze(-1) - targ).pow(2).mean()
        return self.loss.detach()

    def backward(self):
        grads = torch.autograd.grad(self.loss, list(self.params.values()), retain_graph=True)
        return dict(zip(self.params, grads))
"""

# the bank's mistakes as a learner writes them in the file (bugs.py puts them in the lab's own functional backward)
BUGGY = {
    "mse_without_mean": (LIN + RELU + MSE.replace("/ inp.shape[0]", ""), "lin3"),
    "mse_without_two": (LIN + RELU + MSE.replace("2. * ", ""), "lin3"),
    "relu_unmasked": (LIN + MSE + "\ndef relu_grad(inp, out):\n    inp.g = out.g\n", "lin2"),
    "relu_mask_from_output": (LIN + MSE + "\ndef relu_grad(inp, out):\n    inp.g = (out > 0).float() * out.g\n",
                              "lin2"),
    "relu_shift_in_backward": (LIN + MSE + "\ndef relu_grad(inp, out):\n"
                                           "    inp.g = (out.g - 0.5) * (inp > 0).float()\n", "lin2"),
    "bias_over_features": (LIN.replace("out.g.sum(0)", "out.g.sum(1)") + RELU + MSE, "b3"),
    "weight_not_transposed": (LIN.replace("inp.t() @ out.g", "out.g.t() @ inp") + RELU + MSE, "w3"),
    "stale_accumulation": (LIN.replace("inp.g = out.g @ w.t()", "inp.g = getattr(inp, 'g', 0) + out.g @ w.t()")
                           + RELU + MSE, "act2"),
    "layer_passes_zero": (LIN.replace("inp.g = out.g @ w.t()", "inp.g = out.g @ w.t() * 0") + RELU + MSE, "act2"),
}  # fmt: skip
KINDS = {"mse_without_mean": "scale", "mse_without_two": "scale", "relu_unmasked": "relu_mask",
         "relu_mask_from_output": "relu_mask", "relu_shift_in_backward": "offset", "bias_over_features": "wrong_axis",
         "weight_not_transposed": "transposed", "stale_accumulation": "accumulated", "layer_passes_zero": "zero"}
WIDTHS = [20, 12, 12, 1]


def write(tmp_path, source: str, name: str = "my_backward.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def load(path) -> None:
    """The code loaded in its own process, and the process stopped: what loading alone says."""
    isolation.open_submission(str(path), None, 60.0).close()


def check(path, widths=WIDTHS, n=60, dtype=torch.float64, time_limit_s=60.0):
    params, x, y = small_problem(widths, n=n, dtype=dtype)
    return backward.run_check(str(path), params, x, y, 0.5, False, 8.0, time_limit_s=time_limit_s)


@pytest.mark.parametrize("source", [CORRECT, CLASSES, NET], ids=["functions", "classes", "net"])
def test_correct_code_in_each_style_is_ok_at_every_node_it_gives(tmp_path, source):
    checked = check(write(tmp_path, source))
    assert all(c.verdict in ("ok", "not given") for c in checked.checks), [(c.node, c.verdict) for c in checked.checks]
    given = [c.node for c in checked.checks if c.given]
    assert {"w1", "b1", "w3", "b3"} <= set(given)
    if source is not NET:  # the lesson's styles give every node, the input's too
        assert grad_check.overall(checked.checks) == "ok" and "x" in given


@pytest.mark.parametrize("bug", list(BUGGY))
def test_the_banks_mistakes_written_by_a_learner_are_caught(tmp_path, bug):
    source, node = BUGGY[bug]
    checked = check(write(tmp_path, source, f"{bug}.py"))
    assert grad_check.overall(checked.checks) == "wrong", [(c.node, c.verdict) for c in checked.checks]
    assert grad_check.first_divergent(checked.checks) == node
    assert checked.mistake.kind == KINDS[bug], checked.mistake
    line = verdicts.verdict_line(checked.checks, 8.0, torch.float64, checked.mistake)
    assert line.startswith(f"gradients WRONG from node {node} (") and line.endswith(checked.mistake.words)


def test_a_file_that_gives_only_weight_gradients_is_judged_on_them(tmp_path):
    checked = check(write(tmp_path, "def lin_grad(inp, out, w, b):\n    w.g = inp.t() @ out.g\n"
                                    "    b.g = out.g.sum(0)\n"))  # fmt: skip
    by_node = {c.node: c.verdict for c in checked.checks}
    assert {by_node[k] for k in ("w1", "b1", "w2", "b2", "w3", "b3")} == {"ok"}
    assert {by_node[k] for k in ("lin3", "act2", "lin2", "act1", "lin1", "x")} == {"not given"}
    assert grad_check.overall(checked.checks) == "partial"
    assert "not given: lin3, act2" in verdicts.verdict_line(checked.checks, 8.0, torch.float64)


def test_a_syntax_error_is_the_learners_line(tmp_path):
    path = write(tmp_path, "def lin_grad(inp, out, w, b)\n    pass\n")
    with pytest.raises(UserCodeError) as e:
        check(path)
    text = str(e.value)
    assert text.startswith(f"{path}: your code does not compile:") and "SyntaxError" in text
    assert "backprop_lab" not in text


def test_an_exception_in_their_backward_is_their_traceback_only(tmp_path):
    path = write(tmp_path, "def relu_grad(inp, out):\n    inp.g = helper(out)\n\n"
                           "def helper(out):\n    return out.g @ out\n")  # fmt: skip
    with pytest.raises(UserCodeError) as e:
        check(path)
    text = str(e.value)
    assert text.startswith(f"{path}: your code raised RuntimeError")
    assert "in relu_grad" in text and "in helper" in text and "src/backprop_lab" not in text


@pytest.mark.parametrize("body, says", [
    ("w.g = None", "not given"),  # a .g that is not a tensor is not a gradient
    ("w.g = (inp.t() @ out.g).double()", "the run's dtype is torch.float32"),
])  # fmt: skip
def test_what_their_backward_hands_back_is_checked_before_it_is_judged(tmp_path, body, says):
    path = write(tmp_path, f"def lin_grad(inp, out, w, b):\n    inp.g = out.g @ w.t()\n    {body}\n"
                           "    b.g = out.g.sum(0)\n")  # fmt: skip
    if says == "not given":
        checked = check(path, dtype=torch.float32)
        assert {c.node: c.verdict for c in checked.checks}["w1"] == "not given"
    else:
        with pytest.raises(UserCodeError, match=says):
            check(path, dtype=torch.float32)


def test_changing_a_weight_in_place_is_reported_and_undone(tmp_path):
    path = write(tmp_path, CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n    w.mul_(0.5)"))
    params, x, y = small_problem(WIDTHS, n=60)
    before = {k: v.clone() for k, v in params.items()}
    with pytest.raises(UserCodeError, match=r"changed w1, w2, w3 in place"):
        backward.run_check(str(path), params, x, y, 0.5, False, 8.0)
    assert all(torch.equal(params[k], before[k]) for k in params)


def test_an_endless_backward_is_stopped_at_its_limit(tmp_path):
    path = write(tmp_path, "def relu_grad(inp, out):\n    while True:\n        pass\n")
    with pytest.raises(UserCodeError, match=r"ran past impl.time_limit_s=0.5 s"):
        check(path, time_limit_s=0.5)


def test_a_missing_file_or_one_defining_nothing_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="impl.code: no file"):
        load(tmp_path / "nope.py")
    with pytest.raises(ConfigError, match="defines none of Net, Lin, Relu, Mse, lin_grad"):
        load(write(tmp_path, "x = 1\n"))


@pytest.mark.slow  # the entry script in a subprocess
def test_a_learners_file_runs_end_to_end_and_is_logged_with_its_hash(tmp_path):
    import hashlib

    path = write(tmp_path, CORRECT)
    done = cli(tmp_path, "impl=user", "impl.code=my_backward.py", *FAST)
    assert done.returncode == 0, done.stderr
    assert "verdict: gradients ok at every node" in done.stdout
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.run_name.startswith("my_backward·")
    assert run.data.tags["impl.code_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.data.params["impl.code"] == "my_backward.py"
    broken = cli(tmp_path, "impl=user", "impl.code=nope.py", *FAST)
    assert broken.returncode == 1 and broken.stderr.startswith("error: impl.code: no file")


@pytest.mark.parametrize("source, says", [
    ("def lin_grad(x, w):\n    pass\n", r"lin_grad\(x, w\) does not take the lab's call; expected lin_grad\(inp"),
    ("relu_grad = 3\n", "relu_grad is a int, not a function; expected relu_grad\\(inp, out\\)"),
    ("class Lin:\n    def __init__(self):\n        pass\n", r"expected Lin\(w, b\)"),
])  # fmt: skip
def test_a_wrong_signature_is_said_with_the_one_expected(tmp_path, source, says):
    with pytest.raises(ConfigError, match=says):
        load(write(tmp_path, source))


def test_a_backward_that_prints_a_lot_is_cut_and_still_checked(tmp_path, capsys):
    path = write(tmp_path, RELU.replace("    inp.g =", "    for i in range(1000):\n        print('debug', i)\n"
                                        "    inp.g =") + LIN + MSE)  # fmt: skip
    checked = check(path)
    assert grad_check.overall(checked.checks) == "ok"
    out = capsys.readouterr().out
    assert out.count("debug") == output.MAX_PRINTED_LINES and "are not shown" in out


def test_a_net_that_hands_back_none_or_nan_is_judged_not_crashed(tmp_path):
    nan_net = NET.replace("return dict(zip(self.params, grads))",
                          "out = dict(zip(self.params, grads))\n        out['w1'] = out['w1'] * float('nan')\n"
                          "        out['b1'] = None\n        return out")  # fmt: skip
    checked = check(write(tmp_path, nan_net))
    by_node = {c.node: c.verdict for c in checked.checks}
    assert by_node["w1"] == "non-finite" and by_node["b1"] == "not given" and by_node["w2"] == "ok"
    assert grad_check.first_divergent(checked.checks) == "w1" and checked.mistake.kind == "non_finite"


@pytest.mark.slow  # the entry script in a subprocess
def test_a_file_giving_no_parameter_gradient_still_gets_its_run_and_figures(tmp_path):
    write(tmp_path, "def relu_grad(inp, out):\n    inp.g = out.g\n", "only_relu.py")
    done = cli(tmp_path, "impl=user", "impl.code=only_relu.py", *FAST)
    assert done.returncode == 0, done.stderr
    assert "gradients WRONG from node lin1" in done.stdout and "relu" in done.stdout.lower()
    (run,) = runs_in(tmp_path / "mlruns")
    assert run.info.status == "FINISHED" and run.data.tags["grad.mistake"] == "relu_mask"


def test_what_one_submission_leaves_on_the_shared_data_never_passes_as_the_next_ones(tmp_path):
    """Jobs of a sweep share one read of the data: a `.g` left on it by one learner's code must not be read as
    given by the next (a file giving only relu_grad, run after one whose mse_grad lacks its 2)."""
    params, x, y = small_problem(WIDTHS, n=60)
    first = write(tmp_path, LIN + RELU + MSE.replace("2. * ", ""), "carol.py")
    backward.run_check(str(first), params, x, y, 0.5, False, 8.0)
    x.g = torch.zeros_like(x)  # and whatever else a submission leaves on the shared tensors
    params["w1"].g = torch.zeros_like(params["w1"])
    second = write(tmp_path, "def relu_grad(inp, out):\n    pass\n", "gina.py")
    checked = backward.run_check(str(second), params, x, y, 0.5, False, 8.0)
    assert grad_check.overall(checked.checks) == "partial", [(c.node, c.verdict) for c in checked.checks]
    assert {c.node: c.verdict for c in checked.checks}["x"] == "not given"


def test_sys_exit_in_a_learners_file_is_theirs_never_the_labs_exit(tmp_path):
    with pytest.raises(UserCodeError, match="your code raised SystemExit"):
        check(write(tmp_path, CORRECT + "\nimport sys\nsys.exit(0)\n", "at_import.py"))
    with pytest.raises(UserCodeError, match="your code raised SystemExit"):
        check(write(tmp_path, LIN + MSE + "\ndef relu_grad(inp, out):\n    raise SystemExit('done')\n", "in_call.py"))


def test_a_forward_that_differs_from_the_labs_is_said_not_blamed_on_the_backward(tmp_path):
    """The notebook's relu (a fixed 0.5) at another model.relu_shift: the backward is right, the forward is not
    the lab's; said in one line. With a shift argument, the same code is ok."""
    params, x, y = small_problem(WIDTHS, n=60)
    fixed = write(tmp_path, CORRECT + "\ndef relu(x):\n    return x.clamp_min(0.) - 0.5\n", "fixed.py")
    with pytest.raises(UserCodeError, match=r"your forward gives loss .* where the lab's gives .*: your relu subtracts "
                                            r"0.5 where model.relu_shift=0.3; .* run with model.relu_shift=0.5"):
        backward.run_check(str(fixed), params, x, y, 0.3, False, 8.0)
    shifted = write(tmp_path, CORRECT + "\ndef relu(x, *, shift=0.5):\n    return x.clamp_min(0.) - shift\n", "kw.py")
    assert grad_check.overall(backward.run_check(str(shifted), params, x, y, 0.3, False, 8.0).checks) == "ok"


def test_a_wrongly_shaped_gradient_gets_its_verdict_and_diagnosis_not_a_crash_below(tmp_path):
    """The classic un-unsqueezed mse_grad: (N, N), judged at lin3 as a broadcast; the correct steps below it run
    on the lab's gradient instead of crashing in the learner's correct lin_grad."""
    checked = check(write(tmp_path, LIN + RELU + "\ndef mse_grad(inp, targ):\n"
                                    "    inp.g = 2. * (inp - targ) / inp.shape[0]\n"))  # fmt: skip
    assert grad_check.first_divergent(checked.checks) == "lin3"
    assert {c.node: c.verdict for c in checked.checks}["lin3"] == "shape" and checked.mistake.kind == "broadcast"


def test_a_learners_file_imports_its_neighbours(tmp_path):
    (tmp_path / "my_utils.py").write_text("def t(w):\n    return w.t()\n")
    checked = check(write(tmp_path, "from my_utils import t\n" + LIN.replace("w.t()", "t(w)") + RELU + MSE))
    assert grad_check.overall(checked.checks) == "ok"
    assert str(tmp_path.resolve()) not in __import__("sys").path  # put back


@pytest.mark.parametrize("rows", [60, 2000, 50_000])
@pytest.mark.parametrize("slip, node", [
    ("b.g = out.g.mean(0)", "b2"),  # a node of one entry, where any offset would fit
    ("w.g = inp.t() @ out.g / inp.shape[0]", "w2"),
])  # fmt: skip
def test_a_mean_where_the_sum_is_due_is_a_factor_of_1_over_n_at_every_n(tmp_path, rows, slip, node):
    """The commonest slip of the lesson, at every N up to the whole of MNIST's training rows: never "zero", never
    an offset that any single number fits."""
    line = {"b": "    b.g = out.g.sum(0)", "w": "    w.g = inp.t() @ out.g"}[node[0]]
    params, x, y = small_problem([20, 12, 1], n=rows, dtype=torch.float32)
    path = write(tmp_path, CORRECT.replace(line, "    " + slip))
    checked = backward.run_check(str(path), params, x, y, 0.5, False, 8.0)
    assert grad_check.first_divergent(checked.checks) == node
    assert checked.mistake.kind == "scale" and f"a factor of 1/N, N = {rows}: a mean where the sum is due?" in (
        checked.mistake.words), checked.mistake  # fmt: skip


@pytest.mark.parametrize("slip, widths, node, kind, says", [
    (("b.g = out.g.sum(0)", "b.g = out.g.sum(0, keepdim=True)"), WIDTHS, "b3", "dims",
     ["shape (1, 1) where (1,) is due", "keepdim", "lin_grad's `b.g"]),
    (("/ inp.shape[0]", "/ inp.shape[0]).squeeze(-1"), WIDTHS, "lin3", "dims",
     ["shape (60,) where (60, 1) is due", "unsqueeze(-1)", "mse_grad's"]),
    (("inp.g = out.g @ w.t()", "inp.g = out.g @ (w if w.shape[0] == w.shape[1] else w.t())"), [12, 12, 12, 1], "act1",
     "transposed", ["out.g @ w where out.g @ w.t() is due", "(12, 12)"]),
])  # fmt: skip
def test_each_shape_slip_gets_its_own_sentence(tmp_path, slip, widths, node, kind, says):
    """A bias that kept its dimension, an mse_grad without its unsqueeze, a weight not transposed on a square layer:
    each said as what it is, with the shape given, the shape due and the line that sets it."""
    source = CORRECT.replace(*slip) if "squeeze" not in slip[1] else CORRECT.replace(
        "inp.g = 2. * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]",
        "inp.g = (2. * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]).squeeze(-1)")  # fmt: skip
    assert source != CORRECT
    checked = check(write(tmp_path, source), widths=widths)
    assert grad_check.first_divergent(checked.checks) == node
    assert checked.mistake.kind == kind and all(s in checked.mistake.words for s in says), checked.mistake


@pytest.mark.parametrize("source, style, says", [
    (CORRECT.replace("    inp.g = out.g @ w.t()\n", ""), "functions",
     "PARTIAL: lin_grad set w.g and b.g but not inp.g: the chain stops at act2"),
    (CLASSES.replace("        inp.g = out.g @ self.w.t()\n", ""), "classes",
     "PARTIAL: Lin's bwd set w.g and b.g but not inp.g: the chain stops at act2"),
])  # fmt: skip
def test_partial_code_leads_with_partial_and_names_the_step_that_left_a_gradient_unset(tmp_path, source, style, says):
    """A lin_grad that forgot `inp.g` is no "ok": the line says PARTIAL, which step left which gradient unset, and
    where the learner's chain stops (the lab's own gradient stands in below, so the rest is still judged)."""
    checked = check(write(tmp_path, source))
    line = verdicts.verdict_line(checked.checks, 8.0, torch.float64, checked.mistake, style)
    assert line.startswith(says) and line.endswith("not given: act2, act1, x"), line


def test_a_relu_without_a_shift_is_told_the_shift_it_implies(tmp_path):
    """course22p2's relu subtracts nothing: the line says so, and the shift that would make the forwards one."""
    params, x, y = small_problem(WIDTHS, n=60)
    plain = write(tmp_path, CORRECT + "\ndef relu(x):\n    return x.clamp_min(0.)\n", "plain_relu.py")
    with pytest.raises(UserCodeError, match=r"your relu subtracts 0 where model.relu_shift=0.5; .* "
                                            r"run with model.relu_shift=0,"):  # fmt: skip
        backward.run_check(str(plain), params, x, y, 0.5, False, 8.0)


def test_a_step_not_written_at_all_is_said_not_given_not_unset(tmp_path):
    checked = check(write(tmp_path, LIN))  # only lin_grad: mse_grad and relu_grad are the lab's
    line = verdicts.verdict_line(checked.checks, 8.0, torch.float64, checked.mistake, "functions", {"lin_grad"})
    assert line.startswith("PARTIAL: no mse_grad or relu_grad given; every node given is ok (9 of 12;"), line


def test_the_notebooks_model_beside_its_classes_is_said_to_be_unused(tmp_path, capsys):
    model = ("\nclass Model:\n    def __init__(self, w1, b1, w2, b2):\n        self.layers = [Lin(w1, b1), Relu(), "
             "Lin(w2, b2)]\n        self.loss = Mse()\n")  # fmt: skip
    checked = check(write(tmp_path, CLASSES + model))
    assert grad_check.overall(checked.checks) == "ok"
    out = capsys.readouterr().out
    said = "your Model is not run: the lab stacks the lesson's layers from your Lin, Relu and Mse"
    assert f"my_backward.py: {said}" in out and out.startswith("note: ")


@pytest.mark.parametrize("slip, node, step", [
    (("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n    out.g *= 2"), "lin3", "lin_grad"),
    (("    inp.g = (inp > 0).float() * out.g", "    out.g[inp <= 0] = 0\n    inp.g = out.g"), "act2", "relu_grad"),
])  # fmt: skip
def test_a_gradient_changed_in_place_after_it_was_set_is_judged_as_it_stands_and_the_step_named(tmp_path, slip, node,
                                                                                                 step):  # fmt: skip
    """Right when set, changed by a later step: judged at the end of the backward as well, never "ok"."""
    checked = check(write(tmp_path, CORRECT.replace(*slip)))
    assert grad_check.first_divergent(checked.checks) == node
    assert checked.mistake.kind == "changed_after" and f"{node}'s gradient was changed by {step}" in (
        checked.mistake.words)  # fmt: skip


def test_a_forward_that_changes_its_input_in_place_is_said_and_still_judged(tmp_path, capsys):
    clamped = CLASSES.replace("return inp.clamp_min(0.) - self.shift", "return inp.clamp_min_(0.) - self.shift")
    checked = check(write(tmp_path, clamped))
    assert grad_check.overall(checked.checks) == "ok"
    assert "your Relu's forward changed its input in place (lin1" in capsys.readouterr().out


PER_EXAMPLE = CORRECT.replace("w.g = inp.t() @ out.g", "w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)")


def foreseen(tmp_path, source: str, widths: list[int], said: str) -> None:
    """`source` checked on 20,000 rows in a process given 1 GiB: refused on its preflight with `said`."""
    params, x, y = small_problem(widths, n=20_000, dtype=torch.float32)
    with isolation.open_submission(str(write(tmp_path, source)), None, 60.0, 1.0) as code:
        with pytest.raises(UserCodeError, match=said):
            backward.run_check(code, params, x, y, 0.5, False, 8.0)


def test_a_gradient_that_would_not_fit_is_foreseen_on_a_preflight_not_allocated(tmp_path):
    """An (N, 1) output minus an (N,) target is (N, N): seen on the first rows, said before the full data is
    touched, with what it would take and the limit it would pass."""
    broadcast = LIN + RELU + "\ndef mse_grad(inp, targ):\n    inp.g = 2. * (inp - targ) / inp.shape[0]\n"
    foreseen(tmp_path, broadcast, [20, 12, 1],
             r"on a preflight of 61 rows your gradient at lin2 is \(61, 61\), so on the full data \(20000, 20000\): "
             r"1\.5 GiB, which with .* is more than .* \(1\.0 GiB, impl\.memory_limit_gib\); not run on the full "
             r"data\. shape "
             r"\(61, 61\) where \(61, 1\) is due: an \(N, 1\) output minus an \(N,\) target")  # fmt: skip


def test_a_per_example_product_summed_afterwards_is_foreseen_with_its_line(tmp_path):
    """course22p2's lin_grad: w.g has the right shape, made from an (N, 784, 80) temporary. The preflight sees the
    tensor on the way, says its size at the full N, the line that made it, and what sums over the examples instead."""
    foreseen(tmp_path, PER_EXAMPLE, [784, 80, 1],
             r"on a preflight of 61 rows, line 4 of .*\.py \(in lin_grad\) makes a tensor of \(61, 784, 80\), so "
             r"on the full data \(20000, 784, 80\): 4\.7 GiB, .*\(1\.0 GiB, impl\.memory_limit_gib\); not run on "
             r"the full data\.\n +w\.g = \(inp\.unsqueeze\(-1\) \* out\.g\.unsqueeze\(1\)\)\.sum\(0\)\n"
             r"That is w1's gradient for every example at once")  # fmt: skip


def test_the_same_product_on_data_it_fits_is_judged_ok(tmp_path):
    """Foresight refuses only what would not fit: on a few thousand rows the per-example product is a slow but
    correct gradient."""
    params, x, y = small_problem([20, 12, 1], n=5_000, dtype=torch.float64)
    with isolation.open_submission(str(write(tmp_path, PER_EXAMPLE)), None, 60.0, 4.0) as code:
        checked = backward.run_check(code, params, x, y, 0.5, False, 8.0)
    assert grad_check.overall(checked.checks) == "ok"
