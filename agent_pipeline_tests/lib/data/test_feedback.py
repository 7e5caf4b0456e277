"""Feedback admission: which reviewed production rows retraining learns from."""

from __future__ import annotations

import pandas as pd

from agent_pipeline.lib.data.feedback import admit_feedback


def _rows(pairs, source=None):
    df = pd.DataFrame(pairs, columns=["text", "label"])
    df["id"] = [f"r{i}" for i in range(len(df))]
    return df.assign(source=source) if source else df


CURATED = _rows([("check my balance", "balance"), ("book a flight", "book_flight")])


def test_known_labels_join_new_labels_wait_for_enough_rows():
    reviewed = _rows(
        [("what is left on my account", "balance")]
        + [(f"visa rules for country {i}", "visa") for i in range(3)]
        + [(f"plug type in city {i}", "plug_type") for i in range(2)],
        "feedback",
    )
    adm = admit_feedback(CURATED, reviewed, eval_texts=[], min_examples_per_label=3)
    assert sorted(adm.admitted["label"].unique()) == ["balance", "visa"]
    assert adm.held_back == {"plug_type": 2}
    assert adm.metadata() == {"n_curated": 2, "n_feedback": 4, "n_feedback_held_back": 2, "n_feedback_in_eval_sets": 0}
    assert list(adm.examples["source"]) == ["curated"] * 2 + ["feedback"] * 4


def test_a_reviewed_text_that_is_an_evaluation_case_stays_out():
    reviewed = _rows([("Book  a FLIGHT to Rome", "book_flight"), ("book a hotel", "book_hotel")], "feedback")
    adm = admit_feedback(CURATED, reviewed, eval_texts=["book a flight to rome"], min_examples_per_label=1)
    assert list(adm.admitted["text"]) == ["book a hotel"]
    assert adm.n_in_eval_sets == 1


def test_no_feedback_is_the_curated_file():
    adm = admit_feedback(CURATED, _rows([], "feedback"), eval_texts=[], min_examples_per_label=20)
    assert len(adm.examples) == 2 and adm.held_back == {} and adm.metadata()["n_feedback"] == 0
