"""lib/textfeatures.py reproduces scikit-learn's TF-IDF features exactly, on hostile text too."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from agent_pipeline.lib import textfeatures
from agent_pipeline.lib.textfeatures import TfidfBlock, union_blocks, union_transform

# Case mappings that depend on context or change length, every kind of whitespace, combining
# marks, emoji, digits, empty and whitespace-only texts.
HOSTILE = [
    "ΟΔΟΣ ΣΑΣ ΚΑΙ Σ", "ὈΔΥΣΣΕΎΣ' ΣΑΣ.", "İstanbul IŞIK ǅemal", "straße STRASSE ﬁnance",
    "tab\there\nnewline\r\nand\u00a0nbsp\u2003em\u2028line\u2029para\x1cfs\x1d\x1e\x1f\x85nel",
    "cafe\u0301 café  e\u0301\u0301", "🚀🚀 rocket 🚀launch", "a", "", "   ", "\t\n",
    "I'd like 2 transfer $100.50 to acct #12-34", "WHAT'S   MY   BALANCE???", "x" * 300,
]


def _fit(analyzer: str, **kw) -> TfidfVectorizer:
    kw.setdefault("ngram_range", (2, 5) if analyzer == "char_wb" else (1, 2))
    corpus = HOSTILE + ["transfer money to savings", "what is my balance", "οδος σας", "istanbul ışık"]
    return TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, **kw).fit(corpus)


def _assert_same_matrix(got, want) -> None:
    assert got.shape == want.shape
    for attr in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr), err_msg=attr)


@pytest.mark.parametrize("analyzer", ["word", "char_wb"])
@pytest.mark.parametrize("norm", ["l2", "l1", None])
def test_block_transform_equals_the_vectorizer_on_hostile_text(analyzer, norm):
    vec = _fit(analyzer, norm=norm)
    block = TfidfBlock.from_vectorizer(vec)
    texts = HOSTILE + [t.upper() for t in HOSTILE] + [" ".join(reversed(HOSTILE))]
    _assert_same_matrix(block.transform(texts), vec.transform(texts))
    _assert_same_matrix(block.transform(texts), vec.transform(texts))  # memo warm: the same
    analyze, vocab = vec.build_analyzer(), vec.vocabulary_
    for text in texts:
        assert block.indices(text) == [vocab[g] for g in analyze(text) if g in vocab], text


def test_no_code_point_lowercases_into_or_out_of_whitespace():
    """Why splitting the raw text and lower-casing word by word equals scikit-learn's order."""
    bad = [
        hex(c) for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and chr(c).isspace() != any(x.isspace() for x in chr(c).lower())
    ]
    assert bad == []


def test_memo_is_bounded_and_never_changes_results(monkeypatch):
    vec = _fit("char_wb")
    texts = [f"word{i} shared Σ{i}Σ" for i in range(500)]
    want = vec.transform(texts)
    monkeypatch.setattr(textfeatures, "MEMO_WORDS", 64)
    block = TfidfBlock.from_vectorizer(vec)
    _assert_same_matrix(block.transform(texts), want)
    assert len(block._memo) <= 64


def test_unreproducible_vectorizers_fall_back_to_their_own_transform():
    from sklearn.pipeline import FeatureUnion

    plain = _fit("char_wb")
    other = [_fit("char", ngram_range=(1, 3)), _fit("word", stop_words=["to"]), _fit("word", binary=True),
             _fit("char_wb", strip_accents="unicode"), _fit("word", lowercase=False)]
    for vec in other:
        with pytest.raises(ValueError, match="cannot reproduce"):
            textfeatures.spec_from_vectorizer(vec)
    union = FeatureUnion([("plain", plain)] + [(f"v{i}", v) for i, v in enumerate(other)])
    blocks = union_blocks(union)
    assert isinstance(blocks[0], TfidfBlock) and blocks[1:] == other
    _assert_same_matrix(union_transform(blocks, HOSTILE), union.transform(HOSTILE))
