"""Synthetic evaluation variants: seeded surface rewrites of cases that keep their expected route.

A router that sends "Book me a flight to Denver" to travel should also do so for
"book me a fligth to Denver", "BOOK ME A FLIGHT TO DENVER", "um, book me a flight to Denver"
or "Book me a flight to Denver please". ``generate_variants`` turns each case of a dataset
(usually the golden set) into a few such variants, each made by one transform:

* ``typo``        - one adjacent-letter swap, deletion or duplication inside one word of >= 4 letters;
* ``casing``      - UPPER, Title or lower case;
* ``punctuation`` - add, drop or change the final ``?``/``!``/``.``, drop or add a comma;
* ``filler``      - a meaning-free prefix or suffix ("um,", "hey,", "please", "can you" ...);
* ``word_order``  - a reorder that keeps the meaning: move a leading/trailing "please" or time
  phrase, or swap two clauses that each start like a clause; cases without one are skipped.

Guarantees:

* Text matched by any ``protected_patterns`` regex (the rule patterns of ``config/agents.yaml``)
  is never altered; moved at most. Every pattern matches the variant exactly as often and on
  the same strings as the source, so a rule fires on a variant iff it fires on its source.
* Label and expected route are copied; variants are not ``critical`` (nor ``canonical``):
  a typo'd case is evidence about robustness, not a promotion gate of its own.
* A variant is dropped when it equals (case-insensitively, whitespace-collapsed) an
  ``exclude_texts`` entry - the training texts - or equals (whitespace-collapsed) its source,
  any case of the input or an earlier variant. Casing variants differ from their source only in
  case, so only the exclusion list compares case-insensitively.
* Deterministic: each case draws from ``random.Random`` seeded with ``seed`` and the case id,
  so the same inputs give the same frame, and adding a case leaves other cases' variants alone.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence

import pandas as pd

TRANSFORMS = ("typo", "casing", "punctuation", "filler", "word_order")
OUTPUT_COLUMNS = ("id", "text", "label", "expected_route", "tags", "source_id", "transform")
REQUIRED_COLUMNS = ("id", "text", "label", "expected_route")
NOT_INHERITED_TAGS = frozenset({"critical", "canonical"})

Span = tuple[int, int]

# Words that start an imperative request: "please"/"can you" read naturally before them.
_IMPERATIVES = frozenset(
    """
add book buy calculate call cancel change check clear close convert create decrease define delete
explain find flip freeze generate get give help increase let list lock look lower make move mute
open order pause pay play put raise read recommend redline remind remove repeat reset resume
review roll say schedule send set share show skip speak spell start stop suggest summarise
summarize switch sync take talk tell text transfer translate turn unlock update use whisper write
""".split()
)
# Words that start a clause; an " and " between two such clauses can be swapped safely.
_CLAUSE_STARTS = _IMPERATIVES | frozenset(
    """
i i'm i'd i've i'll we my it it's there's what what's how when where who why which can could
will would is are do does did should
""".split()
)
_ANY_PREFIXES = ("um, ", "uh, ", "so, ", "ok, ", "hey, ")
_IMPERATIVE_PREFIXES = ("please ", "can you ", "could you ")
_SUFFIXES = (" please",)
_TIME_PHRASE = (
    r"(?:right now|today|tonight|tomorrow(?: morning| afternoon| evening| night)?|this (?:morning|afternoon|"
    r"evening|week|weekend|month|year)|next (?:week|month|year|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday))"
)
_TRAILING_TIME = re.compile(rf"^(?P<body>.*\S)\s+(?P<time>{_TIME_PHRASE})(?P<end>[.?!]*)$", re.IGNORECASE)
_LEADING_TIME = re.compile(rf"^(?P<time>{_TIME_PHRASE}),?\s+(?P<body>.*\S)$", re.IGNORECASE)
_TRAILING_PLEASE = re.compile(r"^(?P<body>.*\S)\s+(?P<time>please)(?P<end>[.?!]*)$", re.IGNORECASE)
_LEADING_PLEASE = re.compile(r"^(?P<time>please),?\s+(?P<body>.*\S)$", re.IGNORECASE)
_AND_JOIN = re.compile(r",?\s+and\s+", re.IGNORECASE)
_ANAPHORA = re.compile(r"\b(?:it|its|them|they|that|those|there|one|why)\b", re.IGNORECASE)
# A time phrase after one of these belongs to it ("on my calendar for next week"): never move it alone.
_PREPOSITIONS = frozenset("about after as at before by during for from in of on since till until".split())
_END_PUNCT = re.compile(r"[.?!]+$")
_TYPO_WORD = re.compile(r"[A-Za-z]{4,}")
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def generate_variants(
    cases: pd.DataFrame,
    *,
    seed: int,
    variants_per_case: int = 2,
    protected_patterns: Sequence[str] = (),
    exclude_texts: Iterable[str] = (),
    transforms: Sequence[str] = TRANSFORMS,
) -> pd.DataFrame:
    """Up to ``variants_per_case`` route-preserving variants of each case, in case order.

    Columns: ``id`` (``<source id>~<transform>``, ``-2``, ``-3`` ... when a transform repeats),
    ``text``, ``label``, ``expected_route``, ``tags`` (``synthetic;<transform>`` + the source's
    tags except ``critical``/``canonical``), ``source_id``, ``transform``.
    """
    _check_inputs(cases, variants_per_case, transforms)
    patterns = _compile(protected_patterns)
    excluded = {_key(t).lower() for t in exclude_texts}
    tags_col = cases["tags"] if "tags" in cases.columns else pd.Series([""] * len(cases), index=cases.index)
    seen = {_key(str(t)) for t in cases["text"]}
    rows: list[tuple[str, ...]] = []
    for source_id, text, label, route, tags in zip(
        cases["id"].astype(str),
        cases["text"].astype(str),
        cases["label"].astype(str),
        cases["expected_route"].astype(str),
        tags_col.fillna("").astype(str),
    ):
        rng = random.Random(f"{seed}\x1f{source_id}")
        spans = _spans(text, patterns)
        signature = _signature(text, patterns)
        inherited = [t for t in (s.strip() for s in tags.split(";")) if t and t not in NOT_INHERITED_TAGS]
        order = rng.sample(list(transforms), len(transforms))
        inapplicable: set[str] = set()
        used: dict[str, int] = {}
        made = 0
        for attempt in range(len(order) * (variants_per_case + 1)):
            if made == variants_per_case or len(inapplicable) == len(order):
                break
            name = order[attempt % len(order)]
            if name in inapplicable:
                continue
            variant = _TRANSFORM_FUNCS[name](text, spans, rng)
            if variant is None:
                inapplicable.add(name)
                continue
            key = _key(variant)
            if key in seen or key.lower() in excluded or not _same_matches(variant, signature, patterns):
                continue
            seen.add(key)
            used[name] = used.get(name, 0) + 1
            suffix = "" if used[name] == 1 else f"-{used[name]}"
            variant_tags = ";".join(dict.fromkeys(["synthetic", name, *inherited]))
            rows.append((f"{source_id}~{name}{suffix}", variant, label, route, variant_tags, source_id, name))
            made += 1
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), dtype=str)


def _check_inputs(cases: pd.DataFrame, variants_per_case: int, transforms: Sequence[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in cases.columns]
    if missing:
        raise ValueError(f"generate_variants: cases lack column(s) {missing}; normalize the dataset first")
    duplicated = cases["id"][cases["id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"generate_variants: column 'id' has duplicate id {duplicated.iloc[0]!r}")
    unknown = [t for t in transforms if t not in _TRANSFORM_FUNCS]
    if unknown or not transforms:
        raise ValueError(f"generate_variants: unknown transform(s) {unknown or 'none given'}; choose from {TRANSFORMS}")
    if variants_per_case < 0:
        raise ValueError(f"generate_variants: variants_per_case must be >= 0, got {variants_per_case}")


def _compile(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"generate_variants: protected pattern {p!r} is not a valid regex: {exc}") from exc
    return compiled


def _key(text: str) -> str:
    return " ".join(str(text).split())


def _spans(text: str, patterns: list[re.Pattern[str]]) -> list[Span]:
    return [m.span() for p in patterns for m in p.finditer(text) if m.end() > m.start()]


def _signature(text: str, patterns: list[re.Pattern[str]]) -> list[list[str]]:
    """What each protected pattern matches, as a multiset: equal signatures = same rules, same words."""
    return [sorted(m.group(0) for m in p.finditer(text)) for p in patterns]


def _same_matches(variant: str, signature: list[list[str]], patterns: list[re.Pattern[str]]) -> bool:
    if not any(signature):  # the common case, checked cheaply: the variant must match no pattern either
        return not any(p.search(variant) for p in patterns)
    return _signature(variant, patterns) == signature


def _overlaps(start: int, end: int, spans: list[Span]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _inside(pos: int, spans: list[Span]) -> bool:
    return any(s < pos < e for s, e in spans)


def _map_unprotected(text: str, spans: list[Span], fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to every word that no protected span touches."""
    return _WORD.sub(lambda m: m.group(0) if _overlaps(*m.span(), spans) else fn(m.group(0)), text)


def _typo(text: str, spans: list[Span], rng: random.Random) -> str | None:
    words = [m for m in _TYPO_WORD.finditer(text) if not _overlaps(*m.span(), spans)]
    if not words:
        return None
    m = rng.choice(words)
    w = m.group(0)
    swaps = [i for i in range(1, len(w) - 1) if w[i] != w[i + 1]]
    op = rng.choice(["swap", "delete", "duplicate"] if swaps else ["delete", "duplicate"])
    if op == "swap":
        i = rng.choice(swaps)
        new = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    else:
        i = rng.randrange(1, len(w))
        new = w[:i] + w[i + 1 :] if op == "delete" else w[:i] + w[i] + w[i:]
    return text[: m.start()] + new + text[m.end() :]


def _title_word(word: str) -> str:
    return word[0].upper() + word[1:].lower()


_CASINGS = (str.upper, _title_word, str.lower)


def _casing(text: str, spans: list[Span], rng: random.Random) -> str | None:
    for fn in rng.sample(_CASINGS, len(_CASINGS)):
        out = _map_unprotected(text, spans, fn)
        if out != text:
            return out
    return None


def _punctuation(text: str, spans: list[Span], rng: random.Random) -> str | None:
    body = text.rstrip()
    end = _END_PUNCT.search(body)
    ops: list[Callable[[], str]] = []
    if end and not _overlaps(*end.span(), spans):
        ops.append(lambda: body[: end.start()])
        ops.append(lambda: body[: end.start()] + rng.choice([p for p in ("?", "!", ".") if p != end.group(0)]))
    elif not end:
        ops.append(lambda: body + rng.choice(("?", "!", ".")))
    commas = {i for i, ch in enumerate(body) if ch == "," and not _overlaps(i, i + 1, spans)}
    if commas:
        ops.append(lambda: "".join(ch for i, ch in enumerate(body) if i not in commas))
    gaps = [m.start() for m in re.finditer(r"(?<=[A-Za-z0-9]) (?=\S)", body) if not _inside(m.start(), spans)]
    if gaps:
        ops.append(lambda: (lambda g: body[:g] + "," + body[g:])(rng.choice(gaps)))
    return rng.choice(ops)() if ops else None


def _first_word(text: str) -> str:
    m = _WORD.match(text)
    return m.group(0).lower() if m else ""


def _decapitalise_start(text: str, spans: list[Span]) -> str:
    """Lower-case the first word when it is an ordinary capitalised word (not "I", not an acronym)."""
    m = _WORD.match(text)
    if not m or _overlaps(*m.span(), spans):
        return text
    w = m.group(0)
    if len(w) > 1 and w[0].isupper() and w[1:] == w[1:].lower() and not w.startswith(("I'", "I ")) and w != "I":
        return w[0].lower() + text[1:]
    return text


def _capitalise_like(source: str, text: str) -> str:
    return text[:1].upper() + text[1:] if source[:1].isupper() else text


def _filler(text: str, spans: list[Span], rng: random.Random) -> str | None:
    lowered = text.lower()
    prefixes = list(_ANY_PREFIXES)
    if _first_word(text) in _IMPERATIVES:
        prefixes += _IMPERATIVE_PREFIXES
    if text[:1].isupper() and _decapitalise_start(text, spans) == text and not re.match(r"I\b", text):
        prefixes = []  # a protected or odd capitalised first word would read "um, Summarise ..."
    options = [("prefix", p) for p in prefixes if not re.match(rf"{p.strip(' ,')}\b", lowered)]
    options += [("suffix", s) for s in _SUFFIXES if s.strip() not in lowered]
    if not options:
        return None
    where, filler = rng.choice(options)
    if where == "prefix":
        rest = _decapitalise_start(text, spans) if text[:1].isupper() else text
        if filler.endswith("you ") and rest.endswith(".") and not _inside(len(rest) - 1, spans):
            rest = rest[:-1] + "?"  # "can you book a table." reads as a question
        return _capitalise_like(text, filler + rest)
    body = text.rstrip()
    end = _END_PUNCT.search(body)
    cut = end.start() if end and not _overlaps(*end.span(), spans) else len(body)
    return body[:cut] + filler + body[cut:]


def _move_phrase(text: str, spans: list[Span]) -> list[str]:
    """Variants that move a leading/trailing "please" or time phrase to the other end."""
    out = []
    for trailing in (_TRAILING_PLEASE, _TRAILING_TIME):
        m = trailing.match(text)
        if not m:
            continue
        body = m.group("body").rstrip(" ,")
        words = body.lower().split()
        if not words or words[-1] in _PREPOSITIONS:
            continue
        if trailing is _TRAILING_PLEASE and _first_word(body) not in _IMPERATIVES:
            continue  # "please, a volume of 4 is ideal" reads wrong; only requests take a leading please
        body = _decapitalise_start(body, spans)
        out.append(_capitalise_like(text, f"{m.group('time')}, {body}{m.group('end')}"))
    for leading in (_LEADING_PLEASE, _LEADING_TIME):
        m = leading.match(text)
        if m:
            body, end = m.group("body"), ""
            tail = _END_PUNCT.search(body)
            if tail and not _overlaps(tail.start() + m.start("body"), tail.end() + m.start("body"), spans):
                body, end = body[: tail.start()], tail.group(0)
            phrase = m.group("time")
            out.append(_capitalise_like(text, f"{body} {phrase[0].lower()}{phrase[1:]}{end}"))
    return out


def _swap_clauses(text: str, spans: list[Span]) -> list[str]:
    """Swap "A and B" to "B and A" when both sides start like a clause (not "eggs and milk")."""
    joins = [m for m in _AND_JOIN.finditer(text) if not _overlaps(*m.span(), spans)]
    if len(joins) != 1:
        return []
    m = joins[0]
    left, right = text[: m.start()], text[m.end() :]
    if _first_word(left) not in _CLAUSE_STARTS or _first_word(right) not in _CLAUSE_STARTS:
        return []
    if _ANAPHORA.search(right):
        return []  # "review my calendar and tell me what's on it": "it" needs the first clause
    end = _END_PUNCT.search(right)
    tail = ""
    if end and not _overlaps(end.start() + m.end(), end.end() + m.end(), spans):
        right, tail = right[: end.start()], end.group(0)
    left = _decapitalise_start(left, [(s, e) for s, e in spans if e <= m.start()])
    return [_capitalise_like(text, f"{right}{m.group(0)}{left}{tail}")]


def _word_order(text: str, spans: list[Span], rng: random.Random) -> str | None:
    options = [o for o in _move_phrase(text, spans) + _swap_clauses(text, spans) if o != text]
    return rng.choice(options) if options else None


_TRANSFORM_FUNCS: dict[str, Callable[[str, list[Span], random.Random], str | None]] = {
    "typo": _typo,
    "casing": _casing,
    "punctuation": _punctuation,
    "filler": _filler,
    "word_order": _word_order,
}
