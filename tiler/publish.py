"""``tiler publish``: a source folder -> a snapshot or a diff of a dataset in S3, manifest written last.

Safe to re-run after a crash: objects go up first (identical bytes are skipped), the manifest that
names them last, so readers never see a generation with a missing object.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from gigaformat.clock import iso, parse_iso, utc_now
from gigaformat.digests import file_sha256
from gigaformat.errors import StorageError, UnsupportedFormat
from gigaformat.manifest import Manifest, ObjectRef, Step, dataset_prefix, manifest_key
from gigaformat.names import check_dataset_name
from gigaformat.s3 import load_remote_state, read_manifest, storage_error
from gigaformat.state import CHANGES_NAME, STATE_NAME, State, diff_states, dump_gzip_json
from gigaformat.state import index_key as state_index_key
from tiler.build import Build, Progress, build_generation, plan_layout
from tiler.errors import InvalidSource
from tiler.source import DEFAULT_LIMITS, Limits, Source, load_source
from tiler.storage import ITEMS_PER_TILE_LIMIT
from tiler.upload import PackUploader, Upload, check_present, delete_prefix, put_bytes, upload_files

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class PublishResult:
    dataset: str
    generation: int
    kinds: tuple[str, ...]  # what was written: ("snapshot",), ("diff",), ("diff", "snapshot") or ()
    objects: int
    bytes_uploaded: int
    seconds: float
    changed_items: int
    upload_seconds: float = 0.0  # of ``seconds``, the time spent uploading objects
    items: int = 0  # items in the source

    @property
    def items_per_second(self) -> float:
        return self.items / max(self.seconds, 1e-9)


def _write_step(build: Build, kind: str, index_doc: dict, staging: Path, prefix: str, published: str) -> Step:
    """Write the step's documents (its index, and a snapshot's tile index) into ``staging``; the Step lists
    them with every pack the build wrote under ``prefix``."""
    index_key = prefix + (STATE_NAME if kind == "snapshot" else CHANGES_NAME)
    documents = {index_key: dump_gzip_json(index_doc)}
    if kind == "snapshot" and build.state.tiles is not None:
        documents[state_index_key(prefix)] = build.state.tiles.to_bytes()
    objects = [ObjectRef(p.key, p.size, p.sha256) for p in build.packs if p.key.startswith(prefix)]
    for key, data in documents.items():
        path = staging / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        objects.append(ObjectRef(key, len(data), hashlib.sha256(data).hexdigest()))
    if kind == "snapshot" and build.items_archive is not None:
        archive = build.items_archive
        objects.append(ObjectRef(archive.relative_to(staging).as_posix(), archive.stat().st_size, file_sha256(archive)))
    return Step(kind, build.state.generation, index_key, tuple(objects), published)


def _upload_documents(client, bucket: str, dataset: str, step: Step, staging: Path, on_bytes) -> int:
    """Upload the step's documents (its packs are up already), then check that every object is there."""
    uploads = [Upload(staging / o.key, dataset_prefix(dataset) + o.key, o.size, o.sha256) for o in step.objects
               if (staging / o.key).is_file()]
    sent = upload_files(client, bucket, uploads, on_bytes)
    check_present(client, bucket, dataset, step.objects)
    return sent


def _remote_blobs(client, bucket: str, dataset: str):
    """(pack key, offset, length) -> bytes of a published object, by a ranged GET."""

    def fetch(key: str, offset: int, length: int) -> bytes:
        full = dataset_prefix(dataset) + key
        try:
            body = client.get_object(Bucket=bucket, Key=full, Range=f"bytes={offset}-{offset + length - 1}")["Body"]
            return body.read()
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, f"cannot read s3://{bucket}/{full}", bucket) from None

    return fetch


def _build_and_upload(client, bucket: str, dataset: str, source: Source, kind: str, generation: int,
                      previous: State | None, staging: Path, now: datetime, options: dict, on_bytes) -> tuple:
    """Build one step (packs uploaded as they fill), write and upload its documents; (Build, Step, bytes)."""
    prefix = f"{'snap' if kind == 'snapshot' else 'diff'}-{generation}/"
    uploader = PackUploader(client, bucket, dataset, on_bytes)
    try:
        build = build_generation(source, dataset, generation, prefix, staging, previous, reuse=kind == "diff",
                                 fetch_previous=_remote_blobs(client, bucket, dataset), on_pack=uploader,
                                 **options)
        sent = uploader.finish()
    except BaseException:
        uploader.abandon()
        raise
    return build, prefix, sent


def publish(source_dir: Path, dataset: str, bucket: str, client, snapshot: bool = False,
            retention: timedelta = DEFAULT_RETENTION, items_per_tile: int = ITEMS_PER_TILE_LIMIT,
            progress: Progress | None = None, on_bytes=lambda n: None, store: str = "auto",
            allow_shrink: bool = False, limits: Limits = DEFAULT_LIMITS) -> PublishResult:
    """Publish ``source_dir`` as the next generation of ``dataset`` in ``bucket``.

    The first publish writes a snapshot; later ones a diff against the current generation (or nothing if
    nothing changed). ``snapshot=True`` also writes a full snapshot (compaction); so does a change of the
    canvas or of the layout, or a previous generation this version cannot read. Packs go up as the build
    fills them, so memory and staging disk stay bounded whatever the wall's size.
    """
    started = time.monotonic()
    check_dataset_name(dataset)
    report = progress or (lambda phase, done, total: None)
    source = load_source(source_dir, limits)
    manifest = read_manifest(client, bucket, dataset)
    previous = _previous_state(client, bucket, manifest)
    check_shrink(source, previous, allow_shrink)
    now = utc_now()
    options = {"items_per_tile": items_per_tile, "progress": report, "store": store}
    if previous is not None and (previous.canvas != source.canvas or previous.meta_columns != list(source.meta_columns)
                                 or previous.stored != plan_layout(source, store, items_per_tile)):
        log.info("publish dataset=%s canvas, metadata columns or layout changed: a snapshot", dataset)
        previous, snapshot = None, True
    with tempfile.TemporaryDirectory(prefix="gigatile-publish-") as tmp:
        staging = Path(tmp)
        steps, changed, sent, uploading = [], 0, 0, 0.0
        generation = (manifest.generation + 1) if manifest else 1
        swept = {generation} | ({manifest.generation} if manifest else set())  # see _remove_leftovers
        if previous is not None:
            build, prefix, packs_sent = _build_and_upload(client, bucket, dataset, source, "diff", generation,
                                                          previous, staging, now, options, on_bytes)
            changes = diff_states(previous, build.state)
            changes.meta_set = build.meta_set(previous)
            if changes.is_empty():
                generation = previous.generation
            else:
                changed = len(changes.items_upsert) + len(changes.items_remove)
                step = _write_step(build, "diff", changes.to_json(), staging, prefix, iso(now))
                mark = time.monotonic()
                sent += packs_sent + _upload_documents(client, bucket, dataset, step, staging, on_bytes)
                uploading += time.monotonic() - mark
                steps.append(step)
        if previous is None or (snapshot and manifest.snapshot.generation != generation):
            build, prefix, packs_sent = _build_and_upload(client, bucket, dataset, source, "snapshot", generation,
                                                          previous, staging, now, options, on_bytes)
            if previous is not None and not steps:  # a compaction of an unchanged generation keeps its cells
                build.state.cells = previous.cells
            step = _write_step(build, "snapshot", build.state.to_json(), staging, prefix, iso(now))
            mark = time.monotonic()
            sent += packs_sent + _upload_documents(client, bucket, dataset, step, staging, on_bytes)
            uploading += time.monotonic() - mark
            steps.append(step)
            changed = changed or (len(source.items) if previous is None else 0)
    if not steps:
        log.info("publish dataset=%s unchanged generation=%d", dataset, generation)
        if manifest is not None:
            _remove_leftovers(client, bucket, dataset, manifest, swept)
        return PublishResult(dataset, generation, (), 0, 0, time.monotonic() - started, 0, 0.0, len(source.items))
    new_manifest = _next_manifest(manifest, source.canvas, dataset, generation, steps, now, retention)
    put_bytes(client, bucket, manifest_key(dataset), new_manifest.to_bytes())
    _expire_retired(client, bucket, dataset, new_manifest, now, retention)
    _remove_leftovers(client, bucket, dataset, new_manifest, swept)
    result = PublishResult(dataset, generation, tuple(s.kind for s in steps), sum(len(s.objects) for s in steps),
                           sent, time.monotonic() - started, changed, uploading, len(source.items))
    log.info("published dataset=%s generation=%d kinds=%s bytes=%d seconds=%.1f", dataset, generation,
             ",".join(result.kinds), sent, result.seconds)
    return result


SHRINK_FRACTION = 0.5  # a publish keeping fewer than this share of the items needs --allow-shrink


def check_shrink(source: Source, previous: State | None, allow_shrink: bool) -> None:
    """Refuse (InvalidSource) an empty wall, or one keeping under half the published items, unless allowed: a
    truncated items.csv must not wipe the wall."""
    if allow_shrink:
        return
    where = source.root / "items.csv"
    if not source.items:
        raise InvalidSource(f"{where}: no items: publishing it would show an empty wall (--allow-shrink to mean it)")
    if previous is not None and len(source.items) < SHRINK_FRACTION * len(previous.items):
        raise InvalidSource(f"{where}: {len(source.items)} items where {len(previous.items)} are published: "
                            f"publishing it would remove {len(previous.items) - len(source.items)} "
                            "(--allow-shrink to mean it)")


def _previous_state(client, bucket: str, manifest: Manifest | None) -> State | None:
    """The published state to diff against; None if there is none or it is in a format this version does not
    read (the next generation is then a snapshot)."""
    if manifest is None:
        return None
    try:
        return load_remote_state(client, bucket, manifest)
    except UnsupportedFormat as exc:
        log.warning("previous generation unreadable (%s); publishing a snapshot", exc)
        return None


def _next_manifest(old: Manifest | None, canvas, dataset: str, generation: int, steps: list[Step],
                   now: datetime, retention: timedelta) -> Manifest:
    diffs = list(old.diffs) if old else []
    snapshot = old.snapshot if old else None
    retired = list(old.retired) if old else []
    for step in steps:
        if step.kind == "diff":
            diffs.append(step)
        else:
            if snapshot is not None:
                retired.append({"prefix": f"snap-{snapshot.generation}/", "since": iso(now)})
            snapshot = step
    keep = []
    for step in diffs:
        # Diffs older than the snapshot serve nodes holding their base, until the retention window passes.
        if step.generation <= snapshot.generation and now - parse_iso(step.published) >= retention:
            retired.append({"prefix": f"diff-{step.generation}/", "since": iso(now)})
        else:
            keep.append(step)
    return Manifest(dataset=dataset, generation=generation, canvas=canvas, snapshot=snapshot, diffs=keep,
                    retired=retired, published=iso(now))


def _remove_leftovers(client, bucket: str, dataset: str, manifest: Manifest, generations: set[int]) -> None:
    """Delete what an interrupted publish left under the step prefixes of ``generations`` (the one this publish
    set out to write, the one it wrote, the one before) that ``manifest`` does not list: packs of an attempt whose
    source has changed since, or whose diff came out empty, or of a compaction killed before its manifest. A
    re-run's packs are uploaded first and the attempt's identical ones kept (``PackUploader`` skips them); a
    retired prefix waits for its retention, as nodes may still be fetching it. ``manifest`` is what this publish
    wrote (or found, when nothing changed); if S3 holds another one by now, another publish ran meanwhile and
    nothing is deleted."""
    root = dataset_prefix(dataset)
    try:
        live = read_manifest(client, bucket, dataset)
    except StorageError as exc:
        log.warning("leftovers not looked for dataset=%s reason=%r", dataset, str(exc))
        return
    if live is None or live.to_bytes() != manifest.to_bytes():
        log.warning("leftovers not looked for dataset=%s: the manifest changed since this publish read or wrote "
                    "it (another publish of the dataset at the same time?)", dataset)
        return
    listed = {root + key for key in manifest.objects()}
    retired = {r["prefix"] for r in manifest.retired}
    for generation in sorted(generations):
        for prefix in (f"snap-{generation}/", f"diff-{generation}/"):
            if prefix in retired:
                continue
            try:
                count = delete_prefix(client, bucket, root + prefix, keep=listed)
            except (ClientError, BotoCoreError, StorageError) as exc:  # only storage left over: the publish is done
                log.warning("leftovers not deleted prefix=%s reason=%r", prefix, str(exc))
                continue
            if count:
                log.info("deleted leftovers of an interrupted publish prefix=%s objects=%d", prefix, count)


def _expire_retired(client, bucket: str, dataset: str, manifest: Manifest, now: datetime,
                    retention: timedelta) -> None:
    """Delete retired prefixes whose window has passed, then drop them from the manifest."""
    live = {key.split("/")[0] + "/" for key in manifest.objects()}
    expired = [r for r in manifest.retired
               if now - parse_iso(r["since"]) >= retention and r["prefix"] not in live]
    if not expired:
        return
    for entry in list(expired):
        try:
            count = delete_prefix(client, bucket, dataset_prefix(dataset) + entry["prefix"])
        except (ClientError, BotoCoreError, StorageError) as exc:  # kept retired: the next publish tries again
            log.warning("retired prefix not deleted prefix=%s reason=%r", entry["prefix"], str(exc))
            expired.remove(entry)
            continue
        log.info("deleted retired prefix=%s objects=%d", entry["prefix"], count)
    if not expired:
        return
    manifest.retired = [r for r in manifest.retired if r not in expired]
    put_bytes(client, bucket, manifest_key(dataset), manifest.to_bytes())
