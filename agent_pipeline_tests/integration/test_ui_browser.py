"""The UI in a real browser: ``make run``'s launcher (dg dev + the MLflow UI) on loopback, driven
by Debian's headless Chromium over the DevTools protocol, as a person would use it.

Steps, each with a screenshot under ``test-artifacts/ui/``: the asset graph shows the lifecycle
groups; ``Materialize all`` clicked on ``train_and_promote_job``'s page launches the lifecycle,
which finishes (watched on its run page); ``candidate_evaluation``'s checks and metric plots
render; a day of traffic dropped into the landing folder is picked up by the landing sensor, and
the ``drift_report`` asset's ``report`` link opens the report in the MLflow UI, where it names
its day and the reference's model version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent_pipeline.lib.core import processes
from agent_pipeline.lib.core.settings import PROJECT_ROOT
from agent_pipeline_tests.conftest import subprocess_env
from agent_pipeline_tests.integration.browser import Browser
from agent_pipeline_tests.integration.services import ARTIFACTS, binary

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
SHOTS = ARTIFACTS / "ui"
DAY = "2026-11-24"
GROUPS = ("datasets", "training", "evaluation", "registry", "monitoring")
GATES = ("no_regression_vs_baseline", "critical_cases_pass", "routing_is_stable", "latency_within_slo")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except OSError:
        return False


class Dagster:
    def __init__(self, url: str) -> None:
        self.url = url

    def gql(self, query: str, **variables) -> dict:
        req = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
            body = json.loads(resp.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def runs(self, job: str) -> list[dict]:
        query = "query($job: String!) { runsOrError(filter: {pipelineName: $job}) { ... on Runs { results { runId status } } } }"
        return self.gql(query, job=job)["runsOrError"]["results"]

    def materializations(self, asset: str) -> list[dict]:
        query = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
            assetMaterializations(limit: 10) { partition runId
              metadataEntries { label ... on UrlMetadataEntry { url } } } } } }"""
        return self.gql(query, path=[asset])["assetOrError"].get("assetMaterializations") or []

    def wait_run(self, job: str, timeout: float) -> dict:
        result: dict = {}

        def finished() -> bool:
            runs = self.runs(job)
            assert not [r for r in runs if r["status"] in ("FAILURE", "CANCELED")], f"{job} failed: {runs}"
            done = [r for r in runs if r["status"] == "SUCCESS"]
            if done:
                result.update(done[0])
            return bool(done)

        processes.wait_until(finished, timeout, interval=3, what=f"a successful {job} run")
        return result


@pytest.fixture(scope="module")
def servers(small_inputs, tmp_path_factory, relaxed_latency_gates):
    binary("chromium", "/usr/lib/chromium/chromium")  # skip before starting anything when absent
    home = tmp_path_factory.mktemp("ui") / "home"
    env = subprocess_env(small_inputs, home)
    env["AGENT_PIPELINE_POLICY_CONFIG"] = str(relaxed_latency_gates)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("AGENT_PIPELINE_MLFLOW_UI_URL", None)
    port, mlflow_port = processes.free_port(), processes.free_port()
    SHOTS.mkdir(parents=True, exist_ok=True)
    launcher = processes.start_group(
        [sys.executable, "-m", "agent_pipeline.run_local", "--port", str(port), "--mlflow-port", str(mlflow_port)],
        env=env, cwd=PROJECT_ROOT, log_path=SHOTS / "run_local.log",
    )  # fmt: skip
    dagster_url, mlflow_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mlflow_port}"
    try:

        def both_up() -> bool:
            assert launcher.poll() is None, (
                f"make run's launcher exited: {(SHOTS / 'run_local.log').read_text()[-3000:]}"
            )
            return http_ok(f"{dagster_url}/server_info") and http_ok(f"{mlflow_url}/health")

        processes.wait_until(both_up, 240, interval=1, what="Dagster and MLflow UIs answering")
        yield {"dagster": dagster_url, "mlflow": mlflow_url, "env": env, "home": home}
    finally:
        processes.stop_group(launcher, timeout=40)


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def test_lifecycle_and_drift_report_through_the_ui(servers, browser):
    dagster = Dagster(servers["dagster"])
    ui = servers["dagster"]

    # 1. The asset graph shows the lifecycle's groups.
    browser.goto(f"{ui}/asset-groups")
    # "Jobs" joins the navigation once the code location has loaded; the edges draw after it.
    browser.wait_text("Global asset lineage", "Jobs", *GROUPS, timeout=180)
    time.sleep(3)
    browser.screenshot(SHOTS / "01_asset_graph.png")

    # 2. Materialize all, clicked on the lifecycle job's page, launches a run that finishes.
    browser.goto(f"{ui}/locations/agent_pipeline/jobs/train_and_promote_job")
    browser.wait_text("train_and_promote_job", "Materialize all", timeout=120)
    processes.wait_until(lambda: browser.click("Materialize all"), 30, what="a clickable Materialize all")
    processes.wait_until(lambda: dagster.runs("train_and_promote_job"), 60, what="the launched run")
    run_id = dagster.runs("train_and_promote_job")[0]["runId"]
    browser.goto(f"{ui}/runs/{run_id}")
    browser.wait_text("train_and_promote_job", timeout=60)
    browser.screenshot(SHOTS / "02_run_started.png")
    run = dagster.wait_run("train_and_promote_job", timeout=900)
    assert run["runId"] == run_id
    assert len(dagster.runs("train_and_promote_job")) == 1, "one click, one run"
    browser.goto(f"{ui}/runs/{run_id}")
    browser.wait_text("Success", "champion_model", timeout=60)
    browser.screenshot(SHOTS / "03_run_succeeded.png")

    # 3. candidate_evaluation: its gates (checks) and its metric plots.
    browser.goto(f"{ui}/assets/candidate_evaluation?view=checks")
    browser.wait_text(*GATES, timeout=90)
    browser.screenshot(SHOTS / "04_candidate_evaluation_checks.png")
    browser.goto(f"{ui}/assets/candidate_evaluation")
    browser.wait_text("Metadata", "route_accuracy", "Plots", timeout=90)
    assert browser.click("Plots"), "no Plots toggle on the asset page"
    processes.wait_until(
        lambda: browser.evaluate("document.querySelectorAll('canvas').length") >= 10, 60, what="metric charts drawn"
    )
    browser.wait_text("route_accuracy", "in_scope_accuracy", "fallback_recall", timeout=30)
    browser.screenshot(SHOTS / "05_candidate_evaluation_plots.png")
    # Plots come in key order (batch_* first): the quality metrics a person looks for are further down.
    assert browser.scroll_to_text("in_scope_accuracy"), "no in_scope_accuracy chart title"
    time.sleep(1)
    browser.screenshot(SHOTS / "05b_candidate_evaluation_quality_plots.png")

    # 4. A day of traffic lands; the landing sensor runs the monitoring job; the report opens.
    sim = subprocess.run(
        [str(BIN / "agent-pipeline"), "simulate-traffic", "--start", DAY, "--days", "1", "--scenario", "stable",
         "--seed", "7", "--rows-per-day", "600"],
        env=servers["env"], capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert "Warning" not in sim.stderr, f"avoidable warnings on the console:\n{sim.stderr}"
    dagster.wait_run("traffic_monitoring_job", timeout=600)
    reports = [m for m in dagster.materializations("drift_report") if m["partition"] == DAY]
    assert reports, "drift_report was not materialized for the landed day"
    links = {e["label"]: e.get("url") for e in reports[0]["metadataEntries"]}
    report_url = links["report"]
    assert report_url.startswith(f"{servers['mlflow']}/#/experiments/"), links
    assert report_url.endswith(f"/artifacts/drift/{DAY}.html?workflowType=machine_learning"), links

    browser.goto(f"{ui}/assets/drift_report")
    processes.wait_until(lambda: browser.links("/artifacts/drift/"), 90, what="the report link on the asset page")
    assert report_url in browser.links("/artifacts/drift/")
    browser.scroll_to_text("Metadata")
    time.sleep(1)
    browser.screenshot(SHOTS / "06_drift_report_asset.png")

    browser.goto(report_url)
    browser.wait_text(f"drift/{DAY}.html", "Model training", timeout=90)
    processes.wait_until(
        lambda: browser.evaluate("[...document.querySelectorAll('iframe')].some(f => f.offsetHeight > 200)"),
        90,
        what="the report's frame in MLflow's artifact viewer",
    )
    time.sleep(15)  # a 4 MB Evidently page draws its charts in the frame
    browser.screenshot(SHOTS / "07_drift_report_in_mlflow.png")
    # The frame is a sandboxed blob (another origin): what it shows is read from the same artifact.
    run_id = report_url.split("/runs/")[1].split("/")[0]
    with urllib.request.urlopen(  # noqa: S310 - loopback
        f"{servers['mlflow']}/get-artifact?path=drift/{DAY}.html&run_uuid={run_id}", timeout=60
    ) as resp:
        page = resp.read().decode("utf-8")
    assert f"<title>Drift report {DAY}: traffic vs reference of model v1</title>" in page
    assert "served by model version v1" in page
