"""The sweep as a user sees it: `mlflow server` on 127.0.0.1 over the project's store, its REST API, and the
experiment page in headless Chromium (Debian's chromium, driven by Playwright), whose screenshot CI keeps."""

from __future__ import annotations

import os

import pytest
import requests
from helpers import CONTRACT, ROOT, MlflowServer, require

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "ci-artifacts" / "mlflow-ui.png"


@pytest.fixture(scope="module")
def server(small_sweep):
    cwd, uri = small_sweep
    srv = MlflowServer(uri, cwd / "mlruns" / "artifacts", cwd=cwd)
    yield srv.url
    srv.stop()


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


def test_experiment_page_shows_the_child_runs(server):
    require(os.path.exists(CHROMIUM) and _has_playwright(), "Debian's chromium and playwright",
            "apt-get install chromium; pip install -e '.[dev]'")  # fmt: skip
    from playwright.sync_api import sync_playwright

    experiment_id = requests.get(
        f"{server}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "backprop-lab"}, timeout=10
    ).json()["experiment"]["experiment_id"]
    names = ["functional·xavier·synthetic", "functional·kaiming_uniform·synthetic", "nn·xavier·synthetic",
             "nn·kaiming_uniform·synthetic"]  # fmt: skip
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{server}/#/experiments/{experiment_id}/runs")
        page.get_by_text("sweep impl=", exact=False).first.wait_for(timeout=60_000)
        page.locator("[role=gridcell] button").first.click()  # the sweep's row folds its children: unfold it
        for name in names:
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True
