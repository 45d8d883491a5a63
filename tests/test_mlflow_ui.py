"""The sweep as a user sees it: `mlflow server` on 127.0.0.1 over the project's store, its REST API, and the
experiment page in headless Chromium (Debian's chromium, driven by Playwright), whose screenshot CI keeps."""

from __future__ import annotations

import os
import re

import pytest
import requests
from helpers import ROOT, MlflowServer, require

from backprop_lab.core.names import CONTRACT
from backprop_lab.tracking.store import UI_HOST, UI_PORT

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "ci-artifacts" / "mlflow-ui.png"
UI_ADDRESS = f"http://{UI_HOST}:{UI_PORT}"


@pytest.fixture(scope="module")
def server(small_sweep):
    cwd, uri = small_sweep
    srv = MlflowServer(uri, cwd / "mlruns" / "artifacts", cwd=cwd)
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def printed(small_sweep, server) -> dict[str, str]:
    """The addresses the sweep's last lines print, the runs table's and the sweep's, on this test's server (the
    printed ones are the port `mlflow ui` serves by default)."""
    cwd, _ = small_sweep
    (line,) = [line for line in (cwd / "sweep.out").read_text().splitlines() if "(the runs table)" in line]
    table, parent = re.findall(r"http://\S+", line)
    return {"table": table.replace(UI_ADDRESS, server), "parent": parent.replace(UI_ADDRESS, server)}


def search(base, experiment_id, filter_string=""):
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
    return requests.post(f"{base}/api/2.0/mlflow/runs/search", json=body, timeout=10).json().get("runs", [])


def test_rest_api_finds_the_parent_and_every_child(server):
    experiment = requests.get(
        f"{server}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "backprop-lab"}, timeout=10
    ).json()["experiment"]
    (parent,) = search(server, experiment["experiment_id"], "tags.`backprop_lab.sweep` = 'parent'")
    children = search(server, experiment["experiment_id"], f"tags.`mlflow.parentRunId` = '{parent['info']['run_id']}'")
    assert len(children) == 4
    for child in children:
        metrics = {m["key"] for m in child["data"]["metrics"]}
        assert not [m for m in CONTRACT if m not in metrics], child["info"]["run_name"]
    assert {m["key"]: m["value"] for m in parent["data"]["metrics"]}["sweep/jobs"] == 4


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
NAMES = ["functional·xavier·synthetic·n_train=128", "functional·kaiming_uniform·synthetic·n_train=128",
         "nn·xavier·synthetic·n_train=128", "nn·kaiming_uniform·synthetic·n_train=128"]  # fmt: skip
# what MLflow 3.17's sidebar lists in its GenAI mode only (Traces it lists in both)
GENAI_ENTRIES = ("Judges", "Evaluation", "Observability", "Sessions", "Prompts", "Agent versions", "Review")


@pytest.fixture(scope="module")
def browser():
    require(os.path.exists(CHROMIUM) and _has_playwright(), "Debian's chromium and playwright",
            "apt-get install chromium; pip install -e '.[dev]'")  # fmt: skip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def sweep_ids(server):
    experiment_id = requests.get(
        f"{server}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "backprop-lab"}, timeout=10
    ).json()["experiment"]["experiment_id"]
    (parent,) = search(server, experiment_id, "tags.`backprop_lab.sweep` = 'parent'")
    children = search(server, experiment_id, f"tags.`mlflow.parentRunId` = '{parent['info']['run_id']}'")
    return experiment_id, parent["info"]["run_id"], [c["info"]["run_id"] for c in children]


def shot(page, name: str) -> None:
    path = ROOT / "ci-artifacts" / f"mlflow-ui-{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def test_the_printed_address_opens_the_classic_runs_view_on_the_sweep_and_its_children(printed, browser, sweep_ids):
    """The runs table the sweep's end prints opens in MLflow's model-training mode, whatever the browser chose
    before (a fresh profile's default is the GenAI mode: Judges, Evaluation, runs as "Training runs")."""
    experiment_id, _, _ = sweep_ids
    assert printed["table"].endswith(f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(printed["table"])
    page.get_by_text("impl=functional,nn", exact=False).first.wait_for(timeout=60_000)
    sidebar = page.locator("aside, nav").first.inner_text()
    assert "Runs" in sidebar.splitlines(), sidebar
    assert not [entry for entry in GENAI_ENTRIES if entry in sidebar], sidebar
    assert page.get_by_text("Training runs", exact=True).count() == 0
    page.locator("[role=gridcell] button").first.click()  # the sweep's row folds its children: unfold it
    for name in NAMES:
        page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
    assert page.get_by_text("No data", exact=False).count() == 0
    shot(page, "runs")
    page.screenshot(path=str(SCREENSHOT))
    page.close()


def test_the_parents_description_renders_the_sweeps_table(printed, browser, sweep_ids):
    experiment_id, parent_id, _ = sweep_ids
    assert printed["parent"].endswith(f"/#/experiments/{experiment_id}/runs/{parent_id}?workflowType=machine_learning")
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(printed["parent"])
    page.locator("table", has_text="first divergent").first.wait_for(timeout=60_000)  # markdown, rendered
    assert page.locator("table", has_text="first divergent").first.get_by_text("kaiming_uniform").count() >= 1
    shot(page, "parent-description")
    page.close()


def test_compare_shows_the_childrens_summaries(server, browser, sweep_ids):
    experiment_id, _, children = sweep_ids
    runs = ",".join(f'"{c}"' for c in children[:2])
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/#/compare-runs?runs=[{runs}]&experiments=[\"{experiment_id}\"]")
    page.get_by_text("act/last_hidden_std", exact=True).first.wait_for(timeout=60_000)
    shot(page, "compare")
    seen = set()  # the metrics table renders the rows in view: scroll through it
    for _ in range(40):
        lines = page.inner_text("body").splitlines()
        seen |= {line.split()[0] for line in lines if line.startswith(("grad/", "time/"))}
        page.mouse.move(700, 800)
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(150)
    assert {"grad/worst_error_ratio", "grad/all_close", "time/backward_vs_autograd"} <= seen, sorted(seen)
    page.close()


def test_a_figure_artifact_renders(server, browser, sweep_ids):
    experiment_id, _, children = sweep_ids
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/#/experiments/{experiment_id}/runs/{children[0]}/artifacts/figures/activations.png")
    image = page.locator("img[src*='activations.png'], img[src^='blob:'], img[src^='data:']").first
    image.wait_for(timeout=60_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle(), timeout=30_000)
    shot(page, "figure")
    page.close()


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_teachers_parent_leads_with_its_answer_and_its_brackets_stay_text(tmp_path, browser):
    """A teacher's folder swept (one correct file, one wrong, one that does not compile): the parent's description
    opens on its counts, in the report's words, and a cell with an interval's brackets before a baseline (a row of
    repeats) renders as text, not as a link."""
    from helpers import FAST, cli
    from mlflow.tracking import MlflowClient
    from test_user_code import CORRECT

    from backprop_lab.core.tables import md_text

    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "alice.py").write_text(CORRECT)
    (tmp_path / "submissions" / "bob.py").write_text(CORRECT.replace("2. * ", ""))
    (tmp_path / "submissions" / "erin.py").write_text("def lin_grad(inp, out, w, b)\n    pass\n")
    assert cli(tmp_path, "-m", "impl=user", "impl.code=submissions/", *FAST).returncode == 1
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("backprop-lab").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`backprop_lab.sweep` = 'parent'")
    cell = "1.15 [0.54, 2.46] (+x.g)"
    run = client.create_run(experiment, run_name="brackets")
    client.set_tag(run.info.run_id, "mlflow.note.content", f"| ratio |\n|---:|\n| {md_text(cell)} |")
    client.set_terminated(run.info.run_id)
    srv = MlflowServer(uri, tmp_path / "mlruns" / "artifacts", cwd=tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{srv.url}/#/experiments/{experiment}/runs/{parent.info.run_id}?workflowType=machine_learning")
        page.get_by_text("3 jobs: 1 ok, 1 WRONG, 1 failed to run", exact=False).first.wait_for(timeout=60_000)
        page.locator("table", has_text="diagnosis").first.wait_for(timeout=30_000)
        shot(page, "teacher-parent")
        page.goto(f"{srv.url}/#/experiments/{experiment}/runs/{run.info.run_id}?workflowType=machine_learning")
        page.get_by_text(cell, exact=False).first.wait_for(timeout=60_000)  # the brackets, shown as they are
        assert page.locator("a", has_text="0.54, 2.46").count() == 0
        page.close()
    finally:
        srv.stop()
