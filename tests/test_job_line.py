"""A sweep job's console line (summary.print_job_line): the first divergent node named, each number under the words
of the metric it is logged as, the time's ratio with its baseline."""

from __future__ import annotations

import re

import pytest
from helpers import FAST
from rich.console import Console

from backprop_lab import run
from backprop_lab.study import summary


def test_a_wrong_job_names_its_first_divergent_node_and_each_number_by_its_metric(tmp_path):
    result = run([*FAST, "impl=functional", "bug=mse_without_two"], launch_dir=tmp_path)
    console = Console(record=True, width=400)
    summary.print_job_line(result, console)
    line = console.export_text().strip()
    assert f"grads WRONG from node {result.first_divergent} (" in line, line  # the report's word
    found = re.search(r"worst error ratio (\S+) × autograd's own error, worst max rel diff (\S+)\)", line)
    assert found, line
    checks = [c for c in result.checks if c.given]
    assert float(found[1]) == pytest.approx(max(c.ratio for c in checks), rel=1e-2) and "worst rel " not in line
    assert float(found[2]) == pytest.approx(max(c.max_rel_diff for c in checks), rel=0.1)
    assert f"× {result.timing.baseline}" in line
