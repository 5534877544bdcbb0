"""Bring one dataset on this node to a manifest's generation: plan, fetch, build, switch, mark, clean.

The order is what keeps a node safe at every instant (layout: ``gigaformat/layout.py``):

1. plan the cheaper path (``plan_steps``: the diffs after the local generation, or snapshot + diffs);
2. fetch and verify the steps' documents (state, tile index, changes) that are not verified here yet;
3. build the new state (snapshot state, then ``apply_changes`` for each diff) and stage it in
   ``generations/<G>/`` (``write_state``); when many pack bytes are still to come and the layout needs no
   mip chains, write ``synch.lazy`` naming G (the render server may serve G now, fetching missing tiles);
4. fetch and verify the packs (alongside 2-3, unless a render server wants the dataset and may start
   lazily from what 3 stages); check that every pack the state reads is here and verified;
5. switch ``current`` to it (one atomic rename), then write ``synch.down`` naming G;
6. only then delete generations and objects that neither G nor the generation before it uses.

A kill at any point leaves ``current`` on the last good generation (or on G, fully verified, with
``synch.down`` written by the next pass); verified objects are kept and not fetched again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from boxlink.errors import BoxlinkError, Cancelled, disk_error
from boxlink.ledger import Ledger
from boxlink.settings import (
    LAZY_BYTES,
    LAZY_FILL_CONCURRENCY,
    LAZY_FIRST_TILE_SECONDS,
    LAZY_HOLD_SECONDS,
    TransferPolicy,
)
from boxlink.transfer import PART_SUFFIX, Downloader, FetchReport, Job, hash_file
from gigaformat.errors import FormatError
from gigaformat.itemsdb import ITEMS_ARCHIVE_NAME, ITEMS_INDEX_NAME, stage_items_index
from gigaformat.layout import DatasetDir
from gigaformat.manifest import Manifest, ObjectRef, Step, dataset_prefix, plan_steps
from gigaformat.state import Changes, State, index_key, load_gzip_json, rebuild_state, step_prefix
from gigaformat.tiles import INDEX_NAME

log = logging.getLogger(__name__)

LEDGER = "boxlink.verified.jsonl"
LOCK = "boxlink.lock"
DISK_HEADROOM = 64 << 20  # keep this much free beyond what a pass needs
HOLD_POLL_SECONDS = 0.02  # how often a held fill looks at synch.serving (a stat and a small read)


@dataclass(frozen=True)
class SyncResult:
    dataset: str
    generation: int  # switched in (and named by synch.down) after the pass
    previous: int | None  # before the pass
    route: str  # "current" (nothing to do), "diffs" or "snapshot"
    fetch: FetchReport | None  # None when nothing had to be fetched

    @property
    def switched(self) -> bool:
        return self.generation != self.previous


class MissingBase(BoxlinkError):
    """The local generation a diff path starts from lacks a pack: take the snapshot path instead."""


@contextmanager
def dataset_lock(folder: DatasetDir) -> Iterator[None]:
    """Hold the dataset's lock (one boxlink at a time per dataset) or raise BoxlinkError."""
    folder.path.mkdir(parents=True, exist_ok=True)
    with (folder.path / LOCK).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BoxlinkError(f"{folder.dataset}: another boxlink is syncing it ({folder.path / LOCK} is "
                               f"locked)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Replica:
    """One dataset's copy on this node (``folder``), kept in step with ``bucket``.

    Hold ``dataset_lock(folder)`` around ``sync``. ``pause`` is the debug hook for crash tests:
    called with a point name ("before-switch", "before-down") right before that step.
    """

    def __init__(self, folder: DatasetDir, client, bucket: str, policy: TransferPolicy,
                 stop: threading.Event | None = None, on_bytes: Callable[[int], None] = lambda n: None,
                 on_plan: Callable[[int, int], None] = lambda objects, nbytes: None,
                 pause: Callable[[str], None] = lambda point: None, lazy_bytes: int = LAZY_BYTES,
                 lazy_hold: float = LAZY_HOLD_SECONDS, first_tile_wait: float = LAZY_FIRST_TILE_SECONDS):
        self.folder = folder
        self.client = client
        self.bucket = bucket
        self.policy = policy
        self.stop = stop or threading.Event()
        self.on_bytes = on_bytes
        self.on_plan = on_plan
        self.pause = pause
        self.lazy_bytes = lazy_bytes
        self.lazy_hold = lazy_hold
        self.first_tile_wait = first_tile_wait

    def sync(self, manifest: Manifest) -> SyncResult:
        """Make the manifest's generation current and verified here; raise BoxlinkError if it cannot be.

        On failure the node keeps its last good generation and every object verified so far.
        """
        if manifest.dataset != self.folder.dataset:
            raise BoxlinkError(f"manifest is for dataset {manifest.dataset!r}, not {self.folder.dataset!r}")
        local = self.folder.current_generation()
        self.folder.objects.mkdir(parents=True, exist_ok=True)
        _remove_parts(self.folder.objects)  # a killed run's partial downloads: not trusted, not resumed
        ledger = Ledger(self.folder.path / LEDGER, self.folder.objects)
        steps = plan_steps(manifest, local)
        if not steps:
            self._confirm(ledger, local)
            return SyncResult(self.folder.dataset, local, local, "current", None)
        try:
            return self._advance(manifest, steps, local, ledger)
        except MissingBase as exc:
            log.warning("diff path impossible dataset=%s reason=%r; taking the snapshot", self.folder.dataset,
                        str(exc))
            return self._advance(manifest, plan_steps(manifest, None), local, ledger)

    # -- the steps -----------------------------------------------------------------------------
    def _advance(self, manifest: Manifest, steps: list[Step], local: int | None, ledger: Ledger) -> SyncResult:
        route = "snapshot" if steps[0].kind == "snapshot" else "diffs"
        target = steps[-1].generation
        log.info("sync plan dataset=%s local=%s target=%d route=%s steps=%s", self.folder.dataset, local, target,
                 route, ",".join(f"{s.kind}-{s.generation}" for s in steps))
        documents = {s.index for s in steps} | {step_prefix(s) + name for s in steps if s.kind == "snapshot"
                                                 for name in (INDEX_NAME, ITEMS_ARCHIVE_NAME)}
        refs = [o for s in steps for o in s.objects]
        jobs = self._plan([r for r in refs if r.key in documents], ledger), self._plan(
            [r for r in refs if r.key not in documents], ledger)
        self._announce(jobs, len(refs))
        # The packs come alongside the documents (the manifest names them all, and each is verified against it
        # on its own) unless a render server wants the dataset (synch.active) and may start lazily from what
        # the documents stage: then they come first, alone (``_hold_fill``).
        pack_bytes = sum(j.size for j in jobs[1])
        lazy_first = self.folder.is_active() and self._enough_to_start_lazily(pack_bytes)
        alongside = _Alongside(self, jobs[1], ledger) if jobs[1] and not lazy_first else None
        try:
            report = self._fetch(jobs[0], ledger)  # the documents first: they are all a lazy start needs
            state = self._build(steps, local)
            if state.generation != manifest.generation or state.dataset != self.folder.dataset:
                raise BoxlinkError(f"{self.folder.dataset}: the steps built {state.dataset}@{state.generation}, "
                                   f"the manifest names generation {manifest.generation}")
            lazy = self._stage(state, steps, local, pack_bytes)
        except BaseException:
            if alongside is not None:
                alongside.cancel()
            raise
        if alongside is not None:
            report = _merged(report, alongside.result(), concurrent=True)
        else:
            served = lazy and self._hold_fill(state.generation)
            # Serving lazily, the render server fetches what its tiles need itself: the fill yields the CPU to
            # it and, when a node serves from it, S3 and the disk too (fewer streams).
            report = _merged(report, self._fetch(jobs[1], ledger, background=lazy, narrow=served))
        self._check_packs(state, ledger, MissingBase if route == "diffs" else BoxlinkError)
        self._switch(state)
        self._collect(state.generation, local, ledger, {state.generation: state})
        return SyncResult(self.folder.dataset, state.generation, local, route, report)

    def _plan(self, refs: list[ObjectRef], ledger: Ledger) -> list[Job]:
        """The downloads of the objects in ``refs`` that are not verified here yet."""
        return [Job(dataset_prefix(self.folder.dataset) + ref.key, self.folder.object_path(ref.key), ref.size,
                    ref.sha256) for ref in refs if not self._already_here(ref, ledger)]

    def _announce(self, jobs: tuple[list[Job], list[Job]], listed: int) -> None:
        need = sum(j.size for group in jobs for j in group)
        self.on_plan(sum(len(group) for group in jobs), need)
        if need:
            self._check_space(need)
        else:
            log.info("fetch dataset=%s nothing to fetch: all %d objects verified here", self.folder.dataset, listed)

    def _fetch(self, jobs: list[Job], ledger: Ledger, background: bool = False, narrow: bool = False,
               stop: threading.Event | _EitherStop | None = None) -> FetchReport | None:
        if not jobs:
            return None
        policy = replace(self.policy, concurrency=min(self.policy.concurrency, LAZY_FILL_CONCURRENCY)) if narrow \
            else self.policy
        downloader = Downloader(self.client, self.bucket, policy, stop or self.stop, self.on_bytes, background)
        report = downloader.fetch(jobs, lambda job, digest: ledger.record(_key_of(self.folder, job), digest))
        log.info("fetched dataset=%s objects=%d bytes=%d seconds=%.2f rate_mbps=%.1f retries=%d",
                 self.folder.dataset, report.objects, report.bytes, report.seconds, report.mb_per_second,
                 report.retries)
        return report

    def _stage(self, state: State, steps: list[Step], local: int | None, pack_bytes: int) -> bool:
        """Write ``generations/<G>/`` (items database, tile index, state) before the packs come; when they are
        many and the layout needs no mip chains, write ``synch.lazy``: the render server may serve G at once,
        fetching what is not here yet itself. True if it was written."""
        self._stage_items_index(state.generation, steps, local)
        try:
            self._write_state(state, steps)
            if self._enough_to_start_lazily(pack_bytes) and not state.variants \
                    and state.generation != self.folder.down_generation():
                self.folder.mark_lazy(state.generation, self.bucket, dataset_prefix(self.folder.dataset))
                log.info("lazy dataset=%s generation=%d packs_to_fetch_bytes=%d", self.folder.dataset,
                         state.generation, pack_bytes)
                self.pause("lazy")
                return True
        except OSError as exc:
            raise disk_error(exc, self.folder.path) from None
        return False

    def _enough_to_start_lazily(self, pack_bytes: int) -> bool:
        """True if a pass with this many pack bytes to fetch lets the render server start lazily (``_stage``)."""
        return pack_bytes >= self.lazy_bytes

    def _hold_fill(self, generation: int) -> bool:
        """Let the node that wants this dataset (``synch.active``) start serving the staged generation before
        the fill takes its cores and disk: wait until it says it serves it (``synch.serving``; a node with a
        registry says so once its record is written), at most ``lazy_hold`` seconds. Measured on 2 cores beside
        the local S3 server (20-Gpx wall, 44,651 items): each worker's load 1.8-2.7 s with the fill running,
        0.5-0.9 s without, and the registration PUT up to 1.7 s. Then wait until it has answered its first
        tile (``synch.answered``), at most ``first_tile_wait`` seconds more: its first viewers come as soon as
        the proxies list it, and the fill's start beside their tiles' ranged GETs made the first 0.32-0.33 s
        instead of 0.02-0.03 (same wall). True if a render server wants the dataset."""
        if not self.folder.is_active():
            return False
        started = time.monotonic()
        if not self._wait_for(lambda: self.folder.serving_generation() == generation, self.lazy_hold):
            if self.stop.is_set():
                return True
            log.info("fill not held longer dataset=%s generation=%d: no render server serves it after %.1f s",
                     self.folder.dataset, generation, self.lazy_hold)
            return True
        serving = time.monotonic()
        answered = self._wait_for(lambda: self.folder.answered_generation() == generation, self.first_tile_wait)
        log.info("fill held dataset=%s generation=%d seconds=%.2f: the node serves it after %.2f s, %s",
                 self.folder.dataset, generation, time.monotonic() - started, serving - started,
                 "and has answered a tile" if answered else f"no tile asked of it within {self.first_tile_wait:.1f} s")
        return True

    def _wait_for(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Look at ``condition`` every HOLD_POLL_SECONDS until it holds (True) or ``seconds`` pass or boxlink
        stops (False: the fill's own checks end a stopping pass)."""
        until = time.monotonic() + seconds
        while not condition():
            if time.monotonic() >= until or self.stop.wait(HOLD_POLL_SECONDS):
                return False
        return True

    def _write_state(self, state: State, steps: list[Step]) -> None:
        """A lone snapshot's state is its published documents, verified on the way down: staged as they came
        (a 44,651-item state: 0.35 s less, on a lazy start's critical path, than serialising and gzipping it
        again); any other path's state is written from what was built."""
        if len(steps) == 1 and steps[0].kind == "snapshot":
            tiles = self.folder.object_path(index_key(step_prefix(steps[0])))
            self.folder.write_state_documents(state.generation, self.folder.object_path(steps[0].index).read_bytes(),
                                              tiles.read_bytes() if state.tiles is not None else None)
        else:
            self.folder.write_state(state)

    def _already_here(self, ref: ObjectRef, ledger: Ledger) -> bool:
        """True if ``objects/<key>`` is verified; a file not in the ledger is hashed once, kept if it matches."""
        if ledger.is_verified(ref.key, ref.size, ref.sha256):
            return True
        path = self.folder.object_path(ref.key)
        if not path.is_file():
            return False
        size, digest = hash_file(path)
        if (size, digest) == (ref.size, ref.sha256):
            ledger.record(ref.key, digest)
            log.info("verified local object key=%s bytes=%d", ref.key, size)
            return True
        log.warning("local object does not match the manifest key=%s; fetching it again", ref.key)
        path.unlink()
        ledger.forget(ref.key)
        return False

    def _check_space(self, need: int) -> None:
        free = shutil.disk_usage(self.folder.objects).free
        if free < need + DISK_HEADROOM:
            raise BoxlinkError(f"disk full: {self.folder.dataset} needs {need / 1e6:.0f} MB (+{DISK_HEADROOM >> 20} "
                               f"MB headroom) under {self.folder.objects}, only {free / 1e6:.0f} MB free; "
                               "free space and run again (the last good generation is still served)")

    def _build(self, steps: list[Step], local: int | None) -> State:
        base = self._load_state(local) if steps[0].kind == "diff" else None
        try:
            return rebuild_state(steps, lambda key: self.folder.object_path(key).read_bytes(), base)
        except (FormatError, OSError) as exc:
            raise BoxlinkError(f"{self.folder.dataset}: cannot build the new generation ({exc})") from None

    def _load_state(self, generation: int | None) -> State:
        try:
            return self.folder.load_state(generation)
        except FormatError as exc:
            raise MissingBase(f"local generation {generation} is unreadable ({exc})") from None

    def _check_packs(self, state: State, ledger: Ledger, error: type[BoxlinkError]) -> None:
        missing = sorted(key for key in state.packs() if not ledger.holds(key))
        if missing:
            raise error(f"{self.folder.dataset}@{state.generation}: {len(missing)} pack(s) missing or not "
                        f"verified here, e.g. {missing[0]}")

    def _stage_items_index(self, generation: int, steps: list[Step], local: int | None) -> None:
        snapshot = next((s for s in steps if s.kind == "snapshot"), None)
        archive = self.folder.object_path(step_prefix(snapshot) + ITEMS_ARCHIVE_NAME) if snapshot else None
        if archive is not None and not archive.is_file():
            return  # a snapshot published without an items index: the generation has none
        base = self.folder.generation_dir(local) / ITEMS_INDEX_NAME if local is not None else None
        if snapshot is None and (base is None or not base.is_dir()):
            raise MissingBase(f"local generation {local} has no items index to apply the diffs to")
        diffs = []
        for step in steps:
            if step.kind == "diff":
                data = self.folder.object_path(step.index).read_bytes()
                changes = Changes.from_json(load_gzip_json(data, step.index))
                diffs.append((changes.meta_set, changes.items_remove))
        target = self.folder.generation_dir(generation) / ITEMS_INDEX_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            stage_items_index(target, archive, base, diffs)
        except FormatError as exc:
            raise BoxlinkError(f"{self.folder.dataset}@{generation}: cannot stage the items index ({exc})") \
                from None

    def _switch(self, state: State) -> None:
        try:
            self.pause("before-switch")
            if self.stop.is_set():
                raise Cancelled("stopped before the switch")
            self.folder.switch_to(state.generation)
            self.pause("before-down")
            self.folder.mark_down(state.generation)
        except OSError as exc:
            raise disk_error(exc, self.folder.path) from None
        log.info("switched dataset=%s generation=%d", self.folder.dataset, state.generation)

    def _confirm(self, ledger: Ledger, generation: int) -> None:
        """Nothing to fetch: make sure ``synch.down`` names the current generation (a kill may have
        come between the switch and the marker)."""
        if self.folder.down_generation() == generation:
            return
        state = self._load_state(generation)
        self._check_packs(state, ledger, BoxlinkError)
        self.folder.mark_down(generation)
        log.info("marked down dataset=%s generation=%d (switched by an earlier run)", self.folder.dataset,
                 generation)
        self._collect(generation, None, ledger)

    # -- garbage collection ----------------------------------------------------------------------
    def _collect(self, current: int, previous: int | None, ledger: Ledger, known: dict[int, State] | None = None) \
            -> None:
        """Delete generations and objects that neither ``current`` nor the generation before it uses.

        ``known``: states already in hand (the one just built and staged), not read back from disk again
        (17 ms for a 4,600-item state)."""
        known = known or {}
        kept_generations = {current}
        older = sorted(g for g in _generation_numbers(self.folder.generations) if g < current)
        if previous is not None and previous != current:
            kept_generations.add(previous)
        elif older:
            kept_generations.add(older[-1])
        keep: set[str] = set()
        for generation in sorted(kept_generations):
            try:
                keep |= (known.get(generation) or self.folder.load_state(generation)).packs()
            except FormatError as exc:
                log.warning("gc: generation %d unreadable (%s); not keeping its packs", generation, exc)
        removed_generations = 0
        for generation in _generation_numbers(self.folder.generations):
            if generation not in kept_generations:
                shutil.rmtree(self.folder.generation_dir(generation), ignore_errors=True)
                removed_generations += 1
        removed, freed = 0, 0
        for path in sorted(self.folder.objects.rglob("*")):
            if path.is_file() and path.relative_to(self.folder.objects).as_posix() not in keep:
                freed += path.stat().st_size
                path.unlink()
                removed += 1
        for folder in sorted((p for p in self.folder.objects.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        ledger.compact()
        log.info("gc dataset=%s kept_generations=%s removed_generations=%d removed_objects=%d freed_bytes=%d",
                 self.folder.dataset, sorted(kept_generations), removed_generations, removed, freed)


class _EitherStop:
    """Set once the pass's ``stop`` (a signal) is, or ``cancel``: what a fetch running beside the pass's own work
    checks (``Downloader`` calls ``is_set`` and ``wait``), so that a failure of that work ends it too."""

    POLL_SECONDS = 0.05  # how often a wait looks at the other event

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.cancel = threading.Event()

    def is_set(self) -> bool:
        return self.stop.is_set() or self.cancel.is_set()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set() and (left := deadline - time.monotonic()) > 0:
            self.cancel.wait(min(left, self.POLL_SECONDS))
        return self.is_set()


class _Alongside:
    """The packs' fetch, started at once in a thread of its own while the pass fetches its documents and
    builds and stages the generation; ``result`` waits for it, ``cancel`` ends it (its verified objects stay)."""

    def __init__(self, replica: Replica, jobs: list[Job], ledger: Ledger):
        self._stop = _EitherStop(replica.stop)
        self._result: FetchReport | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(replica, jobs, ledger), name="boxlink-packs",
                                        daemon=True)
        self._thread.start()

    def _work(self, replica: Replica, jobs: list[Job], ledger: Ledger) -> None:
        try:
            self._result = replica._fetch(jobs, ledger, stop=self._stop)
        except BaseException as exc:  # handed to the pass's own thread by result()
            self._error = exc

    def result(self) -> FetchReport | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """End the fetch and wait for it (what it raises then is the cancel's, not news)."""
        self._stop.cancel.set()
        self._thread.join()


def _merged(first: FetchReport | None, second: FetchReport | None, concurrent: bool = False) -> FetchReport | None:
    """One report for two fetches, one after the other or (``concurrent``) started together."""
    if first is None or second is None:
        return first or second
    seconds = max(first.seconds, second.seconds) if concurrent else first.seconds + second.seconds
    return FetchReport(first.objects + second.objects, first.bytes + second.bytes, seconds,
                       first.retries + second.retries)


def _key_of(folder: DatasetDir, job: Job) -> str:
    return job.dest.relative_to(folder.objects).as_posix()


def _generation_numbers(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def _remove_parts(objects: Path) -> None:
    for part in objects.rglob(f"*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)


def timed_pause(seconds_by_point: dict[str, float], stop: threading.Event) -> Callable[[str], None]:
    """The debug hook behind ``GIGATILE_DEBUG_PAUSE``: sleep at the named points (interruptible)."""

    def pause(point: str) -> None:
        seconds = seconds_by_point.get(point)
        if seconds:
            log.warning("debug pause point=%s seconds=%.1f pid=%d", point, seconds, os.getpid())
            stop.wait(seconds)

    return pause


