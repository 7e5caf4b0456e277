"""Synthetic variants: deterministic, route-preserving, rule words untouched, no leakage, each transform real."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import has_tag, load_dataset
from agent_pipeline.lib.data.synthetic import OUTPUT_COLUMNS, TRANSFORMS, generate_variants
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.model import rules_from_config

ROUTER_CONFIG = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
RULE_PATTERNS = [p for rule in load_agent_registry(settings.DEFAULT_AGENTS_CONFIG).rules for p in rule["all"]]
FILLER_WORDS = {"um", "uh", "so", "ok", "hey", "please", "can", "could", "you"}


def cases() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["c-rule", "c-bank", "c-travel", "c-time", "c-clauses", "c-list", "c-oos"],
            "text": [
                "Generate contract summary",
                "Summary of my bank transactions",
                "Book me a flight to Denver please",
                "What's on my calendar tomorrow?",
                "Turn off the lights and play some jazz",
                "add eggs and milk to my shopping list",
                "How do I file a patent for my invention?",
            ],
            "label": [
                "contract_summary",
                "transactions",
                "book_flight",
                "calendar",
                "smart_home",
                "shopping_list_update",
                "oos",
            ],
            "expected_route": ["contracts", "banking", "travel", "home", "home", "home", "fallback"],
            "tags": ["critical;canonical;rule", "rule;near_miss", "critical", "", "", "", "fallback"],
            "domain": ["x"] * 7,
        }
    )


def generate(df: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
    kwargs = {"seed": 7, "protected_patterns": RULE_PATTERNS} | kwargs
    return generate_variants(cases() if df is None else df, **kwargs)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def is_one_typo(a: str, b: str) -> bool:
    """``b`` is ``a`` with one adjacent swap, one deleted or one duplicated character."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and (a[diff[0]], a[diff[1]]) == (b[diff[1]], b[diff[0]])
    short, long = sorted((a, b), key=len)
    return len(long) - len(short) == 1 and any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_same_inputs_and_seed_give_the_same_frame_and_another_seed_differs():
    first, again = generate(variants_per_case=3), generate(variants_per_case=3)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == list(OUTPUT_COLUMNS)
    assert set(generate(variants_per_case=3, seed=8)["text"]) != set(first["text"])


def test_adding_a_case_leaves_the_other_cases_variants_unchanged():
    base = generate()
    extra = pd.concat(
        [
            cases(),
            pd.DataFrame(
                [
                    {
                        "id": "c-new",
                        "text": "Set a timer for ten minutes please",
                        "label": "timer",
                        "expected_route": "utility",
                        "tags": "",
                        "domain": "x",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    grown = generate(extra)
    pd.testing.assert_frame_equal(grown[grown["source_id"] != "c-new"].reset_index(drop=True), base)
    assert (grown["source_id"] == "c-new").any()


def test_variants_keep_label_and_route_and_drop_the_critical_tag():
    out = generate(variants_per_case=4)
    src = cases().set_index("id")
    assert (out["label"] == out["source_id"].map(src["label"])).all()
    assert (out["expected_route"] == out["source_id"].map(src["expected_route"])).all()
    assert not has_tag(out["tags"], "critical").any() and not has_tag(out["tags"], "canonical").any()
    assert (out["tags"].str.split(";").str[:2].str.join(";") == "synthetic;" + out["transform"]).all()
    assert has_tag(out.loc[out["source_id"] == "c-rule", "tags"], "rule").all()
    assert out["id"].is_unique
    assert (out["id"].str.replace(r"-\d+$", "", regex=True) == out["source_id"] + "~" + out["transform"]).all()


def test_more_variants_than_transforms_get_counted_ids():
    out = generate(variants_per_case=8, transforms=("typo", "casing"))
    assert out["id"].is_unique
    assert out["id"].str.contains(r"~typo-2$").any()
    assert out.groupby("source_id").size().max() <= 8


def test_protected_rule_words_are_never_altered_and_rules_fire_exactly_as_on_the_source():
    rules = rules_from_config(ROUTER_CONFIG, load_agent_registry(settings.DEFAULT_AGENTS_CONFIG))
    fired = lambda text: [r.name for r in rules if r.matches(text)]  # noqa: E731
    src = cases().set_index("id")
    for seed in range(20):
        out = generate(seed=seed, variants_per_case=5)
        canonical = out.loc[out["source_id"] == "c-rule", "text"]
        assert len(canonical) and all("contract" in t and "summary" in t for t in canonical)
        for source_id, text in zip(out["source_id"], out["text"]):
            assert fired(text) == fired(src.loc[source_id, "text"]), text


def test_without_protection_the_rule_words_do_get_rewritten():
    out = pd.concat([generate(seed=s, variants_per_case=5, protected_patterns=()) for s in range(10)])
    canonical = out.loc[out["source_id"] == "c-rule", "text"]
    assert not all("contract" in t and "summary" in t for t in canonical)


def test_excluded_texts_and_duplicates_are_dropped():
    free = generate(variants_per_case=5)
    taken = free["text"].iloc[:3].tolist()
    excluded = generate(variants_per_case=5, exclude_texts=["  " + t.upper().replace(" ", "   ") for t in taken])
    assert not {t.lower() for t in taken} & {t.lower() for t in excluded["text"]}
    keys = excluded["text"].map(lambda t: " ".join(t.split()))
    assert keys.is_unique
    assert not set(keys) & set(cases()["text"])


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_each_transform_makes_the_change_it_names(transform):
    out = generate(transforms=(transform,), variants_per_case=1)
    assert len(out) and (out["transform"] == transform).all()
    src = cases().set_index("id")["text"]
    for source_id, text in zip(out["source_id"], out["text"]):
        source = src[source_id]
        assert text != source
        if transform == "typo":
            changed = [(a, b) for a, b in zip(source.split(), text.split()) if a != b]
            assert len(text.split()) == len(source.split()) and len(changed) == 1, text
            ((a, b),) = changed
            assert re.search(r"[A-Za-z]{4}", a) and is_one_typo(a, b), text
        elif transform == "casing":
            assert text.lower() == source.lower()
        elif transform == "punctuation":
            assert words(text) == words(source)
        elif transform == "filler":
            added = [w for w in words(text) if w not in words(source)]
            assert added and set(added) <= FILLER_WORDS, text
        else:
            assert sorted(words(text)) == sorted(words(source)) and words(text) != words(source), text


def test_word_order_only_where_a_safe_reorder_exists():
    out = generate(transforms=("word_order",), variants_per_case=1).set_index("source_id")["text"]
    assert out["c-travel"] == "Please, book me a flight to Denver"
    assert out["c-time"] == "Tomorrow, what's on my calendar?"
    assert out["c-clauses"] == "Play some jazz and turn off the lights"
    assert "c-list" not in out.index  # "eggs and milk" is not two clauses
    assert "c-oos" not in out.index


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="expected_route"):
        generate(cases().drop(columns=["expected_route"]))
    with pytest.raises(ValueError, match="duplicate id 'c-rule'"):
        generate(pd.concat([cases(), cases().iloc[:1]]))
    with pytest.raises(ValueError, match="unknown transform"):
        generate(transforms=("typo", "leetspeak"))
    with pytest.raises(ValueError, match="not a valid regex"):
        generate(protected_patterns=["(contract"])


def test_golden_set_variants_cover_every_transform_and_avoid_training_texts():
    registry = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    golden = load_dataset(settings.DEFAULT_GOLDEN_DATA, registry)
    train = pd.read_csv(settings.DEFAULT_TRAIN_DATA, dtype=str, keep_default_na=False)
    out = generate(golden, exclude_texts=train["text"])
    assert set(out["transform"]) == set(TRANSFORMS)
    assert len(out) >= 1.9 * len(golden)
    assert not set(out["text"].str.lower().str.strip()) & set(train["text"].str.lower().str.strip())
