"""A bad policy stops the pipeline before training, as one line naming the file and key."""

from __future__ import annotations

import dagster as dg
import yaml

from agent_pipeline.definitions import defs
from agent_pipeline.lib.registry.models import ModelRegistry


def test_bad_policy_fails_router_candidate_before_anything_is_registered(
    small_inputs, pipeline_env, tmp_path, monkeypatch
):
    doc = yaml.safe_load(small_inputs.policy_config.read_text())
    doc["gates"]["no_regression_vs_baseline"]["max_new_failures"] = "ten"
    bad = tmp_path / "policy.yaml"
    bad.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("AGENT_PIPELINE_POLICY_CONFIG", str(bad))
    job = defs().resolve_job_def("train_and_promote_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in ("training_examples", "validation_examples", "router_candidate")],
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "router_candidate"
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"{bad}: gates.no_regression_vs_baseline.max_new_failures: Input should be")
    assert "got 'ten'" in description
    assert ModelRegistry(home=pipeline_env).alias_version("candidate") is None
