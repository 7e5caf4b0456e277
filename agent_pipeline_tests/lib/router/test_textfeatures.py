"""lib/router/textfeatures.py reproduces scikit-learn's TF-IDF features exactly, on hostile text too."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from agent_pipeline.lib.router import textfeatures
from agent_pipeline.lib.router.textfeatures import TfidfBlock, union_blocks, union_transform

# Case mappings that depend on context or change length, every kind of whitespace, combining
# marks, emoji, digits, empty and whitespace-only texts.
HOSTILE = [
    "ΟΔΟΣ ΣΑΣ ΚΑΙ Σ",
    "ὈΔΥΣΣΕΎΣ' ΣΑΣ.",
    "İstanbul IŞIK ǅemal",
    "straße STRASSE ﬁnance",
    "tab\there\nnewline\r\nand\u00a0nbsp\u2003em\u2028line\u2029para\x1cfs\x1d\x1e\x1f\x85nel",
    "cafe\u0301 café  e\u0301\u0301",
    "🚀🚀 rocket 🚀launch",
    "a",
    "",
    "   ",
    "\t\n",
    "I'd like 2 transfer $100.50 to acct #12-34",
    "WHAT'S   MY   BALANCE???",
    "x" * 300,
]


def _fit(analyzer: str, **kw) -> TfidfVectorizer:
    kw.setdefault("ngram_range", (2, 5) if analyzer == "char_wb" else (1, 2))
    corpus = HOSTILE + ["transfer money to savings", "what is my balance", "οδος σας", "istanbul ışık"]
    kw.setdefault("sublinear_tf", True)
    return TfidfVectorizer(analyzer=analyzer, **kw).fit(corpus)


def _assert_same_matrix(got, want) -> None:
    assert got.shape == want.shape
    for attr in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr), err_msg=attr)


@pytest.mark.parametrize("analyzer", ["word", "char_wb"])
@pytest.mark.parametrize("norm", ["l2", "l1", None])
@pytest.mark.parametrize("use_idf", [True, False])
@pytest.mark.parametrize("sublinear_tf", [True, False])
def test_block_transform_equals_the_vectorizer_on_hostile_text(analyzer, norm, use_idf, sublinear_tf):
    """Every supported setting, down to plain counts (no idf, no norm, raw tf)."""
    vec = _fit(analyzer, norm=norm, use_idf=use_idf, sublinear_tf=sublinear_tf)
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
        hex(c)
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and chr(c).isspace() != any(x.isspace() for x in chr(c).lower())
    ]
    assert bad == []


WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def test_context_dependent_lowercasing_never_looks_across_whitespace():
    """Greek final sigma depends on its neighbours: lower-casing per word must still agree,
    next to every whitespace character Python knows."""
    for ws in WHITESPACE:
        for text in (f"AΣ{ws}B", f"Σ{ws}Σ", f"ΟΔΟΣ{ws}'ΣΑΣ'{ws}", f"AΣ'{ws}\u0301B"):
            assert [w.lower() for w in text.split()] == text.lower().split(), repr(text)
    vec = _fit("char_wb")
    block = TfidfBlock.from_vectorizer(vec)
    texts = [f"ΑΣ{ws}ΣΑΣ{ws}{ws}Σ" for ws in WHITESPACE]
    _assert_same_matrix(block.transform(texts), vec.transform(texts))


def test_memo_is_bounded_and_never_changes_results(monkeypatch):
    vec = _fit("char_wb")
    texts = [f"word{i} shared Σ{i}Σ" for i in range(500)]
    want = vec.transform(texts)
    monkeypatch.setattr(textfeatures, "MEMO_WORDS", 64)
    block = TfidfBlock.from_vectorizer(vec)
    _assert_same_matrix(block.transform(texts), want)
    assert len(block._memo.words) <= 64


def test_memo_memory_stays_bounded_on_hostile_words():
    """Users choose the words: long ones are not remembered, and stored indices are capped."""
    import tracemalloc

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).fit(["abcdefghijklmnopqrstuvwxyz" * 4])
    block = TfidfBlock.from_vectorizer(vec)
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    long_words = ["".join(rng.choice(letters, 5000)) for _ in range(20)]
    short_words = ["".join(rng.choice(letters, textfeatures.MEMO_WORD_CHARS)) for _ in range(30_000)]
    tracemalloc.start()
    block.transform(long_words)
    for i in range(0, len(short_words), 1000):
        block.transform([" ".join(short_words[i : i + 1000])])
    retained, _ = tracemalloc.get_traced_memory()  # what is still held: the memo
    tracemalloc.stop()
    assert not any(w in block._memo.words for w in long_words)
    assert block._memo.indices <= textfeatures.MEMO_INDICES + 4 * textfeatures.MEMO_WORD_CHARS
    assert retained < 20 * 2**20, retained
    _assert_same_matrix(block.transform(long_words[:3]), vec.transform(long_words[:3]))


def test_a_bare_string_is_refused_like_scikit_learn():
    block = TfidfBlock.from_vectorizer(_fit("word"))
    with pytest.raises(ValueError, match="iterable of texts"):
        block.transform("transfer money")
    with pytest.raises(ValueError, match="iterable of texts"):
        union_transform([block], "transfer money")


def test_what_cannot_be_reproduced_is_refused_and_dense_blocks_use_their_own_transform():
    from sklearn.pipeline import FeatureUnion
    from sklearn.preprocessing import FunctionTransformer

    plain = _fit("char_wb")
    other = [
        _fit("char", ngram_range=(1, 3)),
        _fit("word", stop_words=["to"]),
        _fit("word", binary=True),
        _fit("char_wb", strip_accents="unicode"),
        _fit("word", lowercase=False),
        _fit("word", dtype=np.float32),
    ]
    for vec in other:
        with pytest.raises(ValueError, match="cannot reproduce"):
            textfeatures.spec_from_vectorizer(vec)
        with pytest.raises(ValueError, match="cannot reproduce"):
            union_blocks(FeatureUnion([("plain", plain), ("other", vec)]))
    with pytest.raises(ValueError, match="transformer_weights"):
        union_blocks(FeatureUnion([("plain", plain)], transformer_weights={"plain": 2.0}))
    with pytest.raises(ValueError, match="'gone'"):
        union_blocks(FeatureUnion([("plain", plain), ("gone", "drop")]))
    length = FunctionTransformer(lambda texts: np.array([[len(t), t.count(" ")] for t in texts], dtype=np.float64))
    union = FeatureUnion([("plain", plain), ("length", length), ("word", _fit("word"))])
    union.fit(HOSTILE)
    blocks = union_blocks(union)
    assert [type(b) for b in blocks] == [TfidfBlock, FunctionTransformer, TfidfBlock]
    _assert_same_matrix(union_transform(blocks, HOSTILE), union.transform(HOSTILE))


@pytest.mark.parametrize("norm", ["l2", "l1", None])
@pytest.mark.parametrize("use_idf", [True, False])
def test_single_text_weights_equal_the_batch_row(norm, use_idf):
    vec = _fit("char_wb", norm=norm, use_idf=use_idf)
    block = TfidfBlock.from_vectorizer(vec)
    for text in HOSTILE:
        row = vec.transform([text])
        idx, w = block.weights_one(text)
        order = np.argsort(idx)
        np.testing.assert_array_equal(idx[order], row.indices)
        np.testing.assert_allclose(w[order], row.data, rtol=0, atol=1e-15)


def test_blocks_with_the_same_ngrams_share_one_memo_and_stay_exact():
    """fast_model svm_nb's counts block cuts the char block's n-grams: once, for both."""
    from sklearn.pipeline import FeatureUnion

    corpus = HOSTILE + ["transfer money to savings", "what is my balance"]
    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True).fit(corpus)
    counts = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), use_idf=False, norm=None).fit(corpus)
    other = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit(corpus)
    union = FeatureUnion([("char", tfidf), ("counts", counts), ("short", other), ("word", _fit("word"))])
    blocks = union_blocks(union)
    assert blocks[0]._memo is blocks[1]._memo
    assert blocks[2]._memo is not blocks[0]._memo and blocks[3]._memo is not blocks[0]._memo
    _assert_same_matrix(union_transform(blocks, HOSTILE), union.transform(HOSTILE))
