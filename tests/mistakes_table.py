"""The learner's mistakes the diagnosis names, each written as a learner writes it, and the sentence each gets:
`python tests/mistakes_table.py > docs/mistakes.md` runs every one through the check as the lab does (its own
process, a 20-12-12-1 net, N = 60 unless said) and writes the table; the tests named in it assert each sentence by
its meaning (the kind, the factor, the node, the shape)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from helpers import small_problem
from test_user_code import BUGGY, CLASSES, CORRECT, LIN, MSE, PER_EXAMPLE, RELU, WIDTHS

from backprop_lab.core.errors import UserError
from backprop_lab.study import backward, verdicts

UNSQUEEZED = "inp.g = 2. * (inp.squeeze(-1) - targ).unsqueeze(-1) / inp.shape[0]"
CASES = [  # (the mistake, as the learner wrote it, its source, widths, rows, the test that shows it)
    *[(f"the bank's `{bug}`", source, WIDTHS, 60, "test_user_code.py::test_the_banks_mistakes_written_by_a_learner_"
       "are_caught") for bug, (source, _) in BUGGY.items()],
    *[(f"`b.g = out.g.mean(0)`, N = {n}", CORRECT.replace("b.g = out.g.sum(0)", "b.g = out.g.mean(0)"), [20, 12, 1], n,
       "test_user_code.py::test_a_mean_where_the_sum_is_due_is_a_factor_of_1_over_n_at_every_n") for n in (60, 50_000)],
    ("`w.g = inp.t() @ out.g / inp.shape[0]`, N = 50,000", CORRECT.replace("w.g = inp.t() @ out.g",
     "w.g = inp.t() @ out.g / inp.shape[0]"), [20, 12, 1], 50_000,
     "test_user_code.py::test_a_mean_where_the_sum_is_due_is_a_factor_of_1_over_n_at_every_n"),
    ("`b.g = out.g.sum(0, keepdim=True)`", CORRECT.replace("b.g = out.g.sum(0)", "b.g = out.g.sum(0, keepdim=True)"),
     WIDTHS, 60, "test_user_code.py::test_each_shape_slip_gets_its_own_sentence"),
    ("mse_grad without its `unsqueeze(-1)`", CORRECT.replace(UNSQUEEZED, f"inp.g = ({UNSQUEEZED[8:]}).squeeze(-1)"),
     WIDTHS, 60, "test_user_code.py::test_each_shape_slip_gets_its_own_sentence"),
    ("`inp.g = out.g @ w` on square layers", CORRECT.replace("inp.g = out.g @ w.t()",
     "inp.g = out.g @ (w if w.shape[0] == w.shape[1] else w.t())"), [12, 12, 12, 1], 60,
     "test_user_code.py::test_each_shape_slip_gets_its_own_sentence"),
    ("`inp.g = 2. * (inp - targ) / inp.shape[0]` (an (N, N) broadcast)", LIN + RELU + "\ndef mse_grad(inp, targ):\n"
     "    inp.g = 2. * (inp - targ) / inp.shape[0]\n", WIDTHS, 60,
     "test_user_code.py::test_a_wrongly_shaped_gradient_gets_its_verdict_and_diagnosis_not_a_crash_below"),
    ("the same broadcast on N = 50,000", LIN + RELU + "\ndef mse_grad(inp, targ):\n    inp.g = 2. * (inp - targ) / "
     "inp.shape[0]\n", WIDTHS, 50_000, "test_user_code.py::test_a_gradient_that_would_not_fit_is_foreseen_on_a_"
     "preflight_not_allocated"),
    ("course22p2's `w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0)`, 784-80-1, N = 50,000", PER_EXAMPLE,
     [784, 80, 1], 50_000,
     "test_user_code.py::test_a_per_example_product_summed_afterwards_is_foreseen_with_its_line"),
    ("a lin_grad that never sets `inp.g`", CORRECT.replace("    inp.g = out.g @ w.t()\n", ""), WIDTHS, 60,
     "test_user_code.py::test_partial_code_leads_with_partial_and_names_the_step_that_left_a_gradient_unset"),
    ("Lin's `bwd` that never sets `inp.g`", CLASSES.replace("        inp.g = out.g @ self.w.t()\n", ""), WIDTHS, 60,
     "test_user_code.py::test_partial_code_leads_with_partial_and_names_the_step_that_left_a_gradient_unset"),
    ("only lin_grad written", LIN, WIDTHS, 60,
     "test_user_code.py::test_a_step_not_written_at_all_is_said_not_given_not_unset"),
    ("course22p2's `relu` (no shift) at the lab's 0.5", CORRECT + "\ndef relu(x):\n    return x.clamp_min(0.)\n",
     WIDTHS, 60, "test_user_code.py::test_a_relu_without_a_shift_is_told_the_shift_it_implies"),
    ("`w.mul_(0.5)` in lin_grad (an input changed in place)", CORRECT.replace("    b.g = out.g.sum(0)",
     "    b.g = out.g.sum(0)\n    w.mul_(0.5)"), WIDTHS, 60,
     "test_user_code.py::test_changing_a_weight_in_place_is_reported_and_undone"),
    ("`out.g *= 2` at the end of lin_grad", CORRECT.replace("    b.g = out.g.sum(0)", "    b.g = out.g.sum(0)\n"
     "    out.g *= 2"), WIDTHS, 60, "test_user_code.py::test_a_gradient_changed_in_place_after_it_was_set_is_judged_as_"
     "it_stands_and_the_step_named"),
    ("`out.g[inp <= 0] = 0; inp.g = out.g` in relu_grad", CORRECT.replace("    inp.g = (inp > 0).float() * out.g",
     "    out.g[inp <= 0] = 0\n    inp.g = out.g"), WIDTHS, 60, "test_user_code.py::test_a_gradient_changed_in_place_"
     "after_it_was_set_is_judged_as_it_stands_and_the_step_named"),
    ("relu_grad's result, three times too large, as a lying Tensor subclass", LIN + MSE + __import__("bad_input").LYING,
     WIDTHS, 60, "test_isolation.py::test_a_tensor_subclass_that_lies_in_comparisons_is_judged_on_its_values"),
]  # fmt: skip


def sentence(source: str, widths: list[int], rows: int) -> str:
    style = "classes" if "class Lin" in source else "functions"
    defined = {n for n in ("lin_grad", "relu_grad", "mse_grad", "Lin", "Relu", "Mse") if f"def {n}(" in source
               or f"class {n}" in source}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "learner.py"
        path.write_text(source)
        params, x, y = small_problem(widths, n=rows, dtype=torch.float32)
        try:
            checked = backward.run_check(str(path), params, x, y, 0.5, False, 8.0)
        except UserError as e:
            return "error: " + " ".join(line.strip() for line in str(e).splitlines()).replace(str(path), "learner.py")
    return "verdict: " + verdicts.verdict_line(checked.checks, 8.0, torch.float32, checked.mistake, style, defined)


def main() -> None:
    print(__doc__.split("\n\n")[0].replace("\n", " "), "\n", file=sys.stderr)
    lines = ["| the mistake | the sentence it gets | the test |", "|---|---|---|"]
    for what, source, widths, rows, test in CASES:
        said = sentence(source, widths, rows).replace("|", "\\|")  # its code spans are the lab's, shown as they are
        lines.append(f"| {what} | {said} | `{test}` |")
        print(lines[-1], file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
