"""A teacher's folder of submissions: `-m impl=user impl.code=DIR/` sweeps each .py file as its own child run, named
by the file; a submission that breaks is a FAILED child with its reason in a line and the sweep goes on; the report
and the parent's description are a row per submission."""

from __future__ import annotations

import pytest
from helpers import FAST, cli, runs_in, split_sweep
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from test_user_code import BUGGY, CLASSES, CORRECT

from backprop_lab import report
from backprop_lab.cli import report as report_cli
from backprop_lab.core.errors import UserError
from backprop_lab.sweeps import submissions

ODD_NAMES = ["a b.py", "c,d.py", "x=1.py", "p(q)[r]{s}.py", "o'brien.py", 'dq"x.py', "dollar${x}.py", "back\\s.py",
             "col:on.py", "ünï.py"]  # fmt: skip


def _as_hydra_sweeps_it(override: str) -> list[str]:
    """The values each job gets: the basic sweeper's strings, each parsed again as that job's override and read from
    its config (where OmegaConf unescapes an escaped interpolation)."""
    parser = OverridesParser.create()
    (sweep,) = parser.parse_overrides([override])
    values = [parser.parse_overrides([f"impl.code={v}"])[0].value() for v in sweep.sweep_string_iterator()]
    return [OmegaConf.create({"code": v}).code for v in values]


def test_a_folder_is_its_py_files_sorted_each_as_hydra_parses_it_back(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in ODD_NAMES + ["notes.txt", ".hidden.py"]:
        (folder / name).write_text("x = 1\n")
    (folder / "inner.py").mkdir()  # a folder named like a file is not a submission
    argv = ["-m", "impl=user", "impl.code=subs/", "data=synthetic"]
    out = submissions.expand(argv, tmp_path)
    assert out[:2] == argv[:2] and out[3] == "data=synthetic"
    assert _as_hydra_sweeps_it(out[2]) == [f"subs/{n}" for n in sorted(ODD_NAMES)]
    assert submissions.given == "impl.code=subs/"
    pattern = submissions.expand(["--multirun", "impl.code=subs/c*.py"], tmp_path)[1]
    assert _as_hydra_sweeps_it(pattern) == ["subs/c,d.py", "subs/col:on.py"]
    absolute = submissions.expand(["-m", f"impl.code={folder}"], tmp_path)[1]
    assert _as_hydra_sweeps_it(absolute)[0] == f"{folder}/{sorted(ODD_NAMES)[0]}"


def test_a_file_a_list_or_a_module_is_left_as_given(tmp_path):
    (tmp_path / "one.py").write_text("x = 1\n")
    argv = ["-m", "impl=user", "impl.code=one.py,two.py", "impl.time_limit_s=2"]
    assert submissions.expand(argv, tmp_path) == argv and submissions.given is None
    assert submissions.expand(["impl.code=one.py"], tmp_path) == ["impl.code=one.py"]
    assert submissions.expand(["impl.code=backprop_lab.impls.lean"], tmp_path) == ["impl.code=backprop_lab.impls.lean"]


def test_a_folder_in_a_single_run_or_without_submissions_is_one_line(tmp_path):
    (tmp_path / "subs").mkdir()
    with pytest.raises(UserError, match=r"^impl.code: subs/ is a folder; sweep its files with -m$"):
        submissions.expand(["impl=user", "impl.code=subs/"], tmp_path)
    with pytest.raises(UserError, match=r"^impl.code: subs/ holds no .py file"):
        submissions.expand(["-m", "impl=user", "impl.code=subs/"], tmp_path)
    with pytest.raises(UserError, match=r"^impl.code: subs/\*.py matches no .py file"):
        submissions.expand(["-m", "impl.code=subs/*.py"], tmp_path)


@pytest.mark.parametrize("error, line", [
    ("UserCodeError: /t/subs/erin.py: your code does not compile:\n  File \"/t/subs/erin.py\", line 3\n"
     "    def f(x)\n           ^\nSyntaxError: expected ':'", "your code does not compile: SyntaxError: expected ':' "
                                                            "(line 3)"),
    ("UserCodeError: /t/subs/erin.py: your code raised RuntimeError: boom\nTraceback (your frames):\n  File ...",
     "your code raised RuntimeError: boom"),
    ("ZeroDivisionError: integer division or modulo by zero", "ZeroDivisionError: integer division or modulo by zero"),
])  # fmt: skip
def test_a_failed_submission_is_its_reason_in_a_line(error, line):
    assert report.failure_line(error, "subs/erin.py") == line


SUBMISSIONS = {  # name: (source, what the check says: verdict tag, first divergent, mistake kind)
    "alice.py": (CORRECT, "ok", "none", None),
    "bob.py": (CLASSES, "ok", "none", None),
    "carol.py": (BUGGY["mse_without_two"][0], "wrong", "lin2", "scale"),
    "dave.py": (BUGGY["bias_over_features"][0], "wrong", "b2", "wrong_axis"),
    "erin.py": ("def lin_grad(inp, out, w, b)\n    pass\n", None, None, None),  # does not import
}


@pytest.mark.slow  # one sweep, in a subprocess
def test_a_teachers_folder_is_a_child_run_per_submission_and_a_row_each(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, (source, *_) in SUBMISSIONS.items():
        (folder / name).write_text(source)
    (folder / "README.txt").write_text("not a submission")
    done = cli(tmp_path, "-m", "impl=user", "impl.code=submissions/", "impl.time_limit_s=10", *FAST)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: 1 of 5 jobs failed")  # then the sweep's run
    assert "erin.py: your code does not compile" in done.stderr
    assert "sweep 'impl.code=submissions/': 5 jobs: 2 ok, 2 WRONG, 1 failed to run; parent run" in done.stdout
    assert "grads WRONG from node lin2" in done.stdout  # a job's line in the report's words
    (parent,), children = split_sweep(runs_in(tmp_path / "mlruns"))
    assert parent.info.run_name == "impl.code=submissions/" and parent.info.status == "FAILED"
    by_file = {r.data.params["impl.code"]: r for r in children}
    assert sorted(by_file) == [f"submissions/{n}" for n in SUBMISSIONS]
    for name, (_, verdict, node, kind) in SUBMISSIONS.items():
        run = by_file[f"submissions/{name}"]
        tags = run.data.tags
        assert run.info.run_name.split("·")[0] == name.removesuffix(".py")
        assert run.info.status == ("FAILED" if verdict is None else "FINISHED"), name
        assert (tags.get("grad.verdict"), tags.get("first_divergent"), tags.get("grad.mistake")) == (
            verdict, node, kind), name  # fmt: skip
    erin = by_file["submissions/erin.py"]
    assert erin.data.tags["error"].startswith("UserCodeError: ")
    assert erin.data.tags["mlflow.note.content"].startswith("**FAILED**: UserCodeError: ")  # the reason, described
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert [a.path for a in client.list_artifacts(erin.info.run_id, "code")] == ["code/erin.py"]  # what failed

    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**5 jobs: 2 ok, 2 WRONG, 1 failed to run**\n")  # the answer first: the UI shows two rows
    rows = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:]
            for line in parent.data.tags["mlflow.note.content"].splitlines() if line.startswith("| submissions/")}
    assert [cells[:3] for cells in rows.values()] == [
        ["FINISHED", "ok", "none"], ["FINISHED", "ok", "none"], ["FINISHED", "WRONG", "lin2"],
        ["FINISHED", "WRONG", "b2"], ["FAILED", "n/a", "-"]]  # fmt: skip
    assert rows["submissions/carol.py"][3] == by_file["submissions/carol.py"].data.tags["grad.mistake_words"]
    assert rows["submissions/dave.py"][3] == by_file["submissions/dave.py"].data.tags["grad.mistake_words"]
    assert rows["submissions/erin.py"][3] == "your code does not compile: SyntaxError: expected ':' (line 1)"
    assert rows["submissions/alice.py"][3] == "-"
    assert not any("x.g)" in cell for cell in rows["submissions/erin.py"])  # a failed row: no baseline of nothing

    out = tmp_path / "report"
    assert report_cli.main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "--out", str(out)]) == 0
    page = (out / "report.md").read_text()
    assert page.splitlines()[0] == f"# sweep {parent.info.run_id}: impl.code=submissions/ \\[FAILED\\]"  # its name
    table = [line for line in page.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| submission | status | verdict | first divergent | diagnosis (or why it failed) | "
                               "× autograd (")  # the ratio names its baseline
    assert [line.split(" | ")[0] for line in table[1:]] == [f"| submissions/{n}" for n in SUBMISSIONS]


@pytest.mark.slow  # the entry script in a subprocess
def test_a_folder_on_the_command_line_without_multirun_or_submissions_is_one_line(tmp_path):
    (tmp_path / "subs").mkdir()
    single = cli(tmp_path, "impl=user", "impl.code=subs/")
    empty = cli(tmp_path, "-m", "impl=user", "impl.code=subs/")
    assert (single.returncode, single.stderr) == (1, "error: impl.code: subs/ is a folder; sweep its files with -m\n")
    assert empty.returncode == 1 and empty.stderr.startswith("error: impl.code: subs/ holds no .py file")
    assert not (tmp_path / "mlruns").exists()


def test_a_file_whose_name_holds_a_control_character_is_refused_not_skipped(tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "ok.py").write_text("")
    (tmp_path / "subs" / "m\x1b]0;TITLE\x07.py").write_text("")
    with pytest.raises(UserError, match=r"^impl.code: 'subs/m\?\]0;TITLE\?.py' has a control character in its name"):
        submissions.expand(["-m", "impl.code=subs/"], tmp_path)
