"""Build data/clinc150/*.csv from the CLINC150 copy in ../shared (run once; outputs are committed).

Deterministic (fixed seed). What it does, and why:

* ``train.csv``  - the CLINC150 "Full" train split, minus the texts held out below.
* ``val.csv``    - the validation split (threshold tuning and the Larson et al. comparison),
  minus the new-topic intents and the 3 texts CLINC150 repeats verbatim from train.
* ``holdout.csv`` - the sealed holdout, carved once from the validation split (below): 5 texts of
  each trained intent and 50 of its 100 out-of-scope texts, seeded. Only the promotion gate
  ``generalizes_to_holdout`` reads it (``lib/evaluation/holdout.py``); no training, threshold
  tuning, synthetic generation or guard rule does (a test greps for readers).
* ``traffic_pool.csv`` - texts that are in neither training nor evaluation, for the production
  traffic simulator: 10 train texts per trained intent (the ``stable`` scenario), 30 of the 100
  out-of-scope train texts (the ``oos-surge`` scenario) and every text of the NEW_TOPIC_INTENTS
  (the ``new-topic`` scenario: "travel requirements" requests the router was never trained on).

Usage: ``python scripts/prepare_data.py [../shared/datasets/clinc150]``
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pandas as pd

SEED = 20261125
NEW_TOPIC_INTENTS = ["international_visa", "plug_type", "travel_alert", "travel_notification", "vaccines"]
POOL_PER_INTENT = 10
POOL_OOS = 30
HOLDOUT_PER_INTENT = 5
HOLDOUT_OOS = 50


def _id(split: str, text: str, intent: str) -> str:
    return f"{split}-" + hashlib.sha1(f"{intent}\t{text}".encode()).hexdigest()[:12]


def main(src: Path, out: Path) -> None:
    train = pd.read_csv(src / "train.csv")
    val = pd.read_csv(src / "val.csv")
    for df, split in ((train, "train"), (val, "val")):
        df["id"] = [_id(split, t, i) for t, i in zip(df["text"], df["intent"])]
        df.rename(columns={"intent": "label"}, inplace=True)
    # Exact duplicate (text, label) rows would make ids collide; CLINC150 has none, assert it.
    assert train["id"].is_unique and val["id"].is_unique

    new_topic = train["label"].isin(NEW_TOPIC_INTENTS)
    in_scope = ~new_topic & (train["label"] != "oos")
    pool_in = train[in_scope].groupby("label", group_keys=False).sample(n=POOL_PER_INTENT, random_state=SEED)
    pool_oos = train[train["label"] == "oos"].sample(n=POOL_OOS, random_state=SEED)
    pool_new = pd.concat([train[new_topic], val[val["label"].isin(NEW_TOPIC_INTENTS)]])
    pool = pd.concat([pool_in.assign(pool="stable"), pool_oos.assign(pool="oos"), pool_new.assign(pool="new-topic")])
    train_out = train.drop(index=pool_in.index.union(pool_oos.index).union(train.index[new_topic]))
    val_out = val[~val["label"].isin(NEW_TOPIC_INTENTS)]
    # CLINC150 repeats 3 validation texts verbatim in train; drop them so no text is shared
    # between training and evaluation (the no-leakage check enforces it).
    seen = set(train_out["text"].str.strip().str.lower())
    val_out = val_out[~val_out["text"].str.strip().str.lower().isin(seen)]

    # The sealed holdout: carved from validation after everything above, so train.csv and
    # traffic_pool.csv are unchanged by it.
    hold_in = (
        val_out[val_out["label"] != "oos"]
        .groupby("label", group_keys=False)
        .sample(n=HOLDOUT_PER_INTENT, random_state=SEED + 1)
    )
    hold_oos = val_out[val_out["label"] == "oos"].sample(n=HOLDOUT_OOS, random_state=SEED + 1)
    holdout = pd.concat([hold_in, hold_oos])
    val_out = val_out.drop(index=holdout.index)

    cols = ["id", "text", "label", "domain", "split"]
    out.mkdir(parents=True, exist_ok=True)
    train_out[cols].sort_values("id").to_csv(out / "train.csv", index=False)
    val_out[cols].sort_values("id").to_csv(out / "val.csv", index=False)
    pool[cols + ["pool"]].sort_values("id").to_csv(out / "traffic_pool.csv", index=False)
    holdout[cols].sort_values("id").to_csv(out / "holdout.csv", index=False)
    shutil.copy(src / "domains.json", out / "domains.json")
    print(f"train {len(train_out)}  val {len(val_out)}  holdout {len(holdout)}  traffic_pool {len(pool)}")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared/datasets/clinc150", root / "data/clinc150")
