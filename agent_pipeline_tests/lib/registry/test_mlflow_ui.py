"""What the MLflow UI shows for this project's experiment, and where its links point."""

from __future__ import annotations

from agent_pipeline.lib.registry.models import EXPERIMENT_KIND, MODEL_TRAINING, ModelRegistry


def test_experiment_opens_in_the_model_training_view_new_or_existing(tmp_path):
    store = ModelRegistry(home=tmp_path, ui_url="http://127.0.0.1:5000/")
    exp_id = store._activate()
    assert store.client.get_experiment(exp_id).tags[EXPERIMENT_KIND] == MODEL_TRAINING

    # An experiment created before the tag existed gets it on first use.
    store.client.delete_experiment_tag(exp_id, EXPERIMENT_KIND)
    again = ModelRegistry(home=tmp_path)
    assert again._activate() == exp_id
    assert again.client.get_experiment(exp_id).tags[EXPERIMENT_KIND] == MODEL_TRAINING


def test_artifact_links_open_mlflows_viewer(tmp_path):
    store = ModelRegistry(home=tmp_path, ui_url="http://127.0.0.1:5000/")
    exp_id = store._activate()
    assert store.artifact_url("abc", "drift/2026-11-24.html") == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/abc/artifacts/drift/2026-11-24.html"
        "?workflowType=machine_learning"
    )
    assert store.version_url("3").endswith("/#/models/agent-router/versions/3?workflowType=machine_learning")
