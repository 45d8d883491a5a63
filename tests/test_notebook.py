"""notebooks/lesson8.ipynb executed headless (nbclient) on small synthetic data in a temporary directory, its outputs
read back: the normalized statistics, every node's verdict, the sweep's frame and the plot, and the "your turn"
section run twice, as shipped and with a bug put into the learner's cell. Cells are found by their tags, not their
position."""

from __future__ import annotations

import base64
import hashlib
import os
import re

import nbformat
import pytest
from helpers import FAST, ROOT, runs_in

NOTEBOOK = ROOT / "notebooks" / "lesson8.ipynb"
TAGS = ("parameters", "setup", "normalize", "init", "forward", "check", "timing", "sweep", "plot", "your-turn",
        "your-check")
MSE_TWO = "2. * "  # what the learner's mse_grad loses in the buggy run: the square's 2


def tagged(nb, tag: str):
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def text(cell, name: str = "stdout") -> str:
    """A cell's stream output `name`, or for "plain" its displayed values as plain text."""
    if name == "plain":
        return "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_the_notebook_is_stored_clean_with_its_tags():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "clear the outputs before committing"
    for tag in TAGS:
        tagged(nb, tag)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from nbclient import NotebookClient

    tmp = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = nb.cells.index(tagged(nb, "parameters")) + 1
    injected = f"BASE = {FAST!r}\nLAUNCH_DIR = {str(tmp)!r}"  # the store in the test's folder, not the project's
    nb.cells.insert(at, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    # the your-turn section again, as a learner who dropped the 2 would run it
    mine, call = tagged(nb, "your-turn"), tagged(nb, "your-check")
    assert MSE_TWO in mine.source
    buggy = nbformat.v4.new_code_cell(mine.source.replace(MSE_TWO, ""), metadata={"tags": ["your-turn-buggy"]})
    again = nbformat.v4.new_code_cell(call.source, metadata={"tags": ["your-check-buggy"]})
    nb.cells[nb.cells.index(call) + 1 : nb.cells.index(call) + 1] = [buggy, again]
    # the kernel inherits this environment: this checkout's code first, whatever is installed
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, whose figures are PNG outputs
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp)}})
    client.execute(env=env)
    return nb, tmp


@pytest.mark.slow
def test_normalized_to_mean_zero_std_one(executed):
    nb, _ = executed
    found = re.search(r"train after normalizing: mean (\S+) std (\S+)", text(tagged(nb, "normalize")))
    assert found, text(tagged(nb, "normalize"))
    assert abs(float(found[1])) < 1e-3 and abs(float(found[2]) - 1) < 1e-3


@pytest.mark.slow
def test_every_node_of_the_check_is_ok(executed):
    nb, _ = executed
    cell = tagged(nb, "check")
    assert text(cell).strip() == "every node ok"
    rows = [line.split() for line in text(cell, "plain").splitlines()[2:]]  # after the header and the index name
    verdicts = {row[0]: row[-1] for row in rows}
    assert {"lin2", "w2", "b2", "lin1", "w1", "b1"} <= set(verdicts), verdicts
    assert set(verdicts.values()) == {"ok"}


@pytest.mark.slow
def test_the_sweep_is_a_frame_of_four_finished_runs_and_a_plot(executed):
    nb, tmp = executed
    cell = tagged(nb, "sweep")
    found = re.fullmatch(r"(\d+) runs, (\d+) flat columns", text(cell).strip())
    assert found and int(found[1]) == 5 and int(found[2]) > 50, text(cell)
    assert text(cell, "plain").count("FINISHED") == 5 and "normal" in text(cell, "plain")
    assert (tmp / "mlruns" / "mlflow.db").is_file()  # the store is the launch dir's, the one the CLI uses
    assert not (tmp / "notebooks").exists()
    ui = text(tagged(nb, "ui")).strip()
    assert ui.startswith(f"cd {tmp} && ") and "ui --backend-store-uri" in ui, ui
    pngs = [o.data["image/png"] for o in tagged(nb, "plot").outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and base64.b64decode(pngs[0]).startswith(b"\x89PNG")


@pytest.mark.slow
def test_no_cell_writes_progress_or_warnings_to_stderr(executed):
    """The CLI's spinner would be a line per frame in a notebook. MLflow imports tqdm.auto, which warns
    (TqdmWarning: IProgress not found) where ipywidgets is missing: the notebook's extra installs it."""
    nb, _ = executed
    said = {tag: text(tagged(nb, tag), "stderr") for tag in TAGS[1:]}
    lines = [line for s in said.values() for line in s.splitlines() if line.strip()]
    assert lines == [], said


def shown(cell) -> str:
    """What rich displayed in a cell, as plain text without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text(cell, "plain"))


def logged(cell, tmp):
    """The MLflow run a `check` cell names in its output."""
    found = re.search(r"MLflow run (\S+) id ([0-9a-f]{32})", shown(cell))
    assert found, shown(cell)
    (run,) = [r for r in runs_in(tmp / "mlruns") if r.info.run_id == found[2]]
    assert run.info.run_name == found[1] and run.info.status == "FINISHED"
    return run


def node_verdicts(cell) -> dict[str, str]:
    """The node table `check` displays (rich's plain-text rendering): node -> verdict, as far as it is shown."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown(cell).splitlines()]
    return {row[0]: row[-1] for row in rows if len(row) > 2 and row[0] and row[0] != "node"}


@pytest.mark.slow
def test_your_turn_as_shipped_is_ok_at_every_node_and_logged(executed):
    nb, tmp = executed
    cell = tagged(nb, "your-check")
    verdicts = node_verdicts(cell)
    assert set(verdicts) == {"lin2", "w2", "b2", "act1", "lin1", "w1", "b1", "x"}, shown(cell)
    assert set(verdicts.values()) == {"ok"}
    assert "verdict: gradients ok at every node" in shown(cell)
    assert logged(cell, tmp).data.tags["grad.verdict"] == "ok"


@pytest.mark.slow
def test_your_turn_without_the_two_is_wrong_from_lin2_a_factor_of_one_half(executed):
    nb, tmp = executed
    cell = tagged(nb, "your-check-buggy")
    verdicts = node_verdicts(cell)
    assert verdicts["lin2"] == "differs" and set(verdicts.values()) == {verdicts["lin2"]}, verdicts
    plain = " ".join(shown(cell).split())
    assert "verdict: gradients WRONG from node lin2" in plain and "× 0.5000" in plain and "2 missing" in plain
    run = logged(cell, tmp)
    tags = run.data.tags
    assert (tags["first_divergent"], tags["grad.verdict"], tags["grad.mistake"]) == ("lin2", "wrong", "scale")
    source = tmp / run.data.params["impl.code"]  # the learner's functions as they ran, the 2 missing
    assert tags["impl.code_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert "def mse_grad(inp, targ):" in source.read_text() and MSE_TWO not in source.read_text()


@pytest.mark.slow
def test_the_your_turn_section_runs_on_its_own(tmp_path):
    """A learner who opens the notebook at "Your turn" runs the parameters cell, then that section's cells only."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [tagged(nb, "parameters"), nbformat.v4.new_code_cell(f"BASE = {FAST!r}\nLAUNCH_DIR = {str(tmp_path)!r}")]
    cells += [tagged(nb, tag) for tag in ("your-turn", "your-check", "ui")]
    nb.cells = cells
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute(
        env=env)  # fmt: skip
    assert text(tagged(nb, "ui")).strip().startswith(f"cd {tmp_path} && ")
