"""The champion a server answers with, following the registry's ``champion`` alias.

``ChampionSource`` is the one place the server talks to the registry: which version the alias
names, and how to load it: the serving bundle (``lib/serving/bundle.py``) when the bundle on
disk is that exact version of that model, else the registered model itself (tiers without a
bundle, or a bundle not yet rewritten).

``ChampionWatcher`` holds the current ``Champion`` and follows the alias from a background
thread: every ``bundle_poll_seconds`` it looks at the bundle file (one ``stat``: a promotion or
rollback rewrites it), and every ``poll_seconds`` (or right after the file changed) it asks the
registry for the alias. When the alias names another version, the new champion is loaded in
that thread and swapped in with one assignment: a request reads ``watcher.current`` once and
finishes on the champion it started with, so a switch drops nothing. A champion is only
replaced by one that loaded; a failed load is logged and retried, the old one keeps serving. When the alias has moved but the bundle on disk is still another
version (a promotion in progress), the watcher waits up to ``bundle_grace_seconds`` for the
bundle before loading the version from the registry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_pipeline.lib.registry.models import CHAMPION, ModelRegistry
from agent_pipeline.lib.serving import bundle as serving_bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Champion:
    model_name: str
    version: str
    source: str  # "bundle" or "registry"
    route: Callable[[str], dict[str, Any]] = field(repr=False)
    loaded_at: float = field(default_factory=time.time)


class ChampionSource:
    """Resolve and load the champion of ``model_name`` in the registry of ``home``."""

    def __init__(self, home: Path, model_name: str, tracking_uri: str | None = None, alias: str = CHAMPION) -> None:
        self.home = Path(home)
        self.alias = alias
        self.registry = ModelRegistry(tracking_uri or None, model_name, home=self.home)
        self.model_name = model_name
        self.bundle_path = serving_bundle.bundle_path(self.home)

    def alias_version(self) -> str | None:
        return self.registry.alias_version(self.alias)

    def bundle_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.bundle_path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def bundle_router(self):
        """The bundle on disk, or None when there is none or it cannot be read (logged)."""
        if not self.bundle_path.is_file():
            return None
        try:
            return serving_bundle.load(self.bundle_path)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign bundle: the registry serves instead
            log.warning("serving bundle %s not used: %s", self.bundle_path, exc)
            return None

    def load(self, version: str) -> Champion:
        router = self.bundle_router()
        if router is not None and str(router.version) == str(version) and router.model_name == self.model_name:
            return Champion(self.model_name, str(version), "bundle", router.route)
        model = self.registry.load(version=version)
        return Champion(self.model_name, str(model.version), "registry", model.route_one)


class ChampionWatcher:
    def __init__(
        self,
        source: ChampionSource,
        *,
        poll_seconds: float = 5.0,
        bundle_poll_seconds: float = 0.5,
        bundle_grace_seconds: float = 5.0,
        on_swap: Callable[[Champion | None, Champion], None] | None = None,
    ) -> None:
        self.source = source
        self.poll_seconds = float(poll_seconds)
        self.bundle_poll_seconds = float(bundle_poll_seconds)
        self.bundle_grace_seconds = float(bundle_grace_seconds)
        self._mismatch_since: dict[str, float] = {}
        self.on_swap = on_swap
        self.current: Champion | None = None
        self.last_error: str | None = None
        self.switches = 0
        self._stamp = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Ask the registry for the alias; load and swap in its version if it changed. True if swapped."""
        with self._lock:
            stamp = self.source.bundle_stamp()
            try:
                version = self.source.alias_version()
            except Exception as exc:  # noqa: BLE001 - an unreachable registry: keep serving, say why
                self.last_error = f"registry: {exc}"
                log.warning("champion watcher: cannot read alias '%s': %s", self.source.alias, exc)
                return False
            if version is None:
                self.last_error = f"model '{self.source.model_name}' has no alias '{self.source.alias}'"
                return False
            old = self.current
            if old is not None and old.version == version:
                if stamp == self._stamp:
                    return False
                # Same alias, the bundle file changed: switch to it only if it is this version (a
                # rebuilt bundle, or the bundle written after a registry load); a bundle for the next
                # version waits for its alias move.
                router = self.source.bundle_router()
                self._stamp = stamp
                if router is None or str(router.version) != version or router.model_name != old.model_name:
                    return False
                new = Champion(old.model_name, version, "bundle", router.route)
            else:
                router = self.source.bundle_router()
                if router is not None and str(router.version) != version and old is not None:
                    # A promotion moves the alias and rewrites the bundle one after the other: give the
                    # bundle a moment before paying for a registry load (the old champion serves meanwhile).
                    first = self._mismatch_since.setdefault(version, time.monotonic())
                    if time.monotonic() - first < self.bundle_grace_seconds:
                        return False
                try:
                    new = self.source.load(version)
                except Exception as exc:  # noqa: BLE001 - keep the old champion; retried at the next poll
                    self.last_error = f"loading v{version}: {exc}"
                    log.error("champion watcher: cannot load v%s: %s", version, exc)
                    return False
                self._mismatch_since.clear()
                self._stamp = stamp
            self.current = new  # one assignment: requests see the old or the new champion, never a mix
            self.last_error = None
            if old is not None and old.version != new.version:
                self.switches += 1
            log.info(
                "champion v%s loaded from the %s (was %s)",
                new.version,
                new.source,
                f"v{old.version}" if old else "none",
                extra={"champion_version": new.version, "previous_version": old.version if old else None},
            )
        if self.on_swap is not None:
            self.on_swap(old, new)
        return True

    # -- background thread --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        if self.current is None:
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - never let the watcher die; logged
                log.exception("champion watcher: refresh failed")
            if self.current is None:
                log.warning("no champion yet (%s); retrying", self.last_error)
        last_poll = time.monotonic()
        while not self._stop.wait(self.bundle_poll_seconds):
            changed = self.source.bundle_stamp() != self._stamp
            due = time.monotonic() - last_poll >= (
                min(self.poll_seconds, 1.0) if self.current is None or self._mismatch_since else self.poll_seconds
            )
            if changed or due:
                last_poll = time.monotonic()
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - never let the watcher die; logged
                    log.exception("champion watcher: refresh failed")
