"""A sweep's parent run shows what its jobs share as the jobs show it: the same string for every shared param."""

from __future__ import annotations

import pytest
from helpers import FAST, cli, runs_in, split_sweep

pytestmark = pytest.mark.slow


def test_the_parents_params_are_the_childrens_for_every_shared_key(tmp_path):
    done = cli(tmp_path, "-m", "impl=functional,nn", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert len(children) == 2
    shared = [k for k in parent.data.params if all(k in c.data.params for c in children)]
    assert {"dtype", "init.scheme", "init.mode", "objective"} <= set(shared)  # the enums' keys among them
    for child in children:
        differ = {k: (parent.data.params[k], child.data.params[k]) for k in shared
                  if parent.data.params[k] != child.data.params[k]}  # fmt: skip
        assert not differ, child.info.run_name
