"""What the service serves: the version the recorded production pointer names, loaded only through
`load_production` (weights verified against the sha256 the pointer approved), held as an immutable
snapshot that is swapped atomically. A request reads the snapshot once and is scored, attributed and
logged by it alone, so a swap in the middle of a request cannot mix two versions.

The watcher polls the pointer every `poll_seconds` on its own thread (loading never blocks a request),
and requests wake it early when the pointer folder holds a newer sequence than the snapshot's (one
directory listing, local lakehouses only). A pointer file newer than the recorded pointer is a change in
flight (the run writes the file, then records it): the current snapshot keeps serving for up to
`grace_seconds`, after which, like any integrity failure, nothing is served (503 with the reason).
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from ml_assets.errors import PlatformError
from ml_assets.records import ProductionPointer

_SEQUENCE = re.compile(r"^(\d{6})\.json$")


@dataclass(frozen=True)
class ModelSnapshot:
    pointer: ProductionPointer
    model: Any  # ml_assets.training.train.LoadedModel
    vocabularies: dict[str, frozenset[str]]
    loaded_at: float

    @property
    def version(self) -> str:
        return self.pointer.version

    @property
    def threshold(self) -> float:
        return self.model.threshold


class ModelWatcher:
    def __init__(self, instance: Any, registry: Any, use_case: str, poll_seconds: float = 5.0,
                 grace_seconds: float = 30.0, on_swap: Any = None) -> None:
        self.instance, self.registry, self.use_case = instance, registry, use_case
        self.poll_seconds, self.grace_seconds, self.on_swap = poll_seconds, grace_seconds, on_swap
        self.snapshot: ModelSnapshot | None = None
        self.failure: str | None = "no model loaded yet"
        self._in_flight_since: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.swaps = 0
        root = registry.lakehouse
        self._pointer_dir = (root._local(registry._uri(use_case, "pointers")) if root._is_local() else None)

    # ---- the request path --------------------------------------------------------------------------
    def current(self) -> tuple[ModelSnapshot | None, str | None]:
        """(snapshot, None) or (None, why nothing is served). Wakes the watcher if the pointer moved."""
        snapshot = self.snapshot
        if (snapshot is not None and self._pointer_dir is not None
                and self._newest_sequence() > snapshot.pointer.sequence):
            self._wake.set()
        return (snapshot, None) if snapshot is not None else (None, self.failure)

    def _newest_sequence(self) -> int:
        try:
            names = os.listdir(self._pointer_dir)
        except OSError:
            return 0
        return max((int(m.group(1)) for n in names if (m := _SEQUENCE.match(n))), default=0)

    # ---- loading -----------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load what production names if it differs from the snapshot. Returns whether it changed."""
        from ml_assets.registry.models import load_version, production_pointer

        with self._lock:
            try:
                pointer = production_pointer(self.instance, self.registry, self.use_case)
                if pointer is None:
                    self._set(None, f"{self.use_case}: no model is in production yet")
                    return False
                current = self.snapshot
                if current is not None and current.pointer == pointer:
                    self._in_flight_since = None
                    return False
                model = load_version(self.registry, self.use_case, pointer.version, pointer.sha256,
                                     pointer.record_sha256)
            except (PlatformError, ValueError) as exc:  # integrity, registry, missing data, bad format
                return self._failed(str(exc))
            vocab = {c: frozenset(v) for c, v in model.preprocessor.vocabularies.items()}
            self._in_flight_since = None
            self._set(ModelSnapshot(pointer, model, vocab, time.time()), None)
            return True

    def _failed(self, reason: str) -> bool:
        """A pointer file ahead of the recorded pointer is a change in flight for a grace period;
        anything else (or a change that never gets recorded) stops serving."""
        in_flight = "newer than the recorded production pointer" in reason
        now = time.monotonic()
        if in_flight and self.snapshot is not None:
            self._in_flight_since = self._in_flight_since or now
            if now - self._in_flight_since < self.grace_seconds:
                return False
        self._set(None, reason)
        return False

    def _set(self, snapshot: ModelSnapshot | None, failure: str | None) -> None:
        changed = (snapshot.pointer if snapshot else None) != (self.snapshot.pointer if self.snapshot else None)
        self.snapshot, self.failure = snapshot, failure  # one reference assignment each: atomic for readers
        if changed:
            self.swaps += 1
            if self.on_swap is not None:
                self.on_swap(snapshot)

    # ---- the thread -------------------------------------------------------------------------------
    def start(self) -> ModelWatcher:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name=f"model-watcher-{self.use_case}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as exc:  # the watcher never dies: the reason is served as a 503
                self._set(None, f"model watcher: {type(exc).__name__}: {exc}")
            if woken and self._in_flight_since is not None:
                time.sleep(0.05)  # a change in flight: look again soon
                self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
