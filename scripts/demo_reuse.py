"""What a second ``make demo`` may reuse from the first, and how it knows.

- The wall (``wall/``): kept while it was generated with the same parameters (``wall.json``), with every change
  ``make demo-update`` made since; a wall of another size is generated afresh.
- The published dataset: ``published.json`` names the generation this demo last published and a digest of
  the wall it published. Same generation in S3 and same wall: nothing to publish. The wall changed since:
  its diff is published (and said). S3 moved on without this demo (a ``tiler publish`` from elsewhere): left
  as it is (and said), never silently published over.
- The release: ``release.json`` names the released version and a digest of the sources that go into it
  (the packages and ``pyproject.toml``); while S3's ``releases/current.json`` names that version and the
  sources are the same, nothing is rebuilt or uploaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bootstrap.pointers import pointer_key
from bootstrap.s3io import read_json
from gigaformat.errors import GigatileError
from gigaformat.s3 import read_manifest

PACKAGES = ("gigaformat", "tiler", "boxlink", "proxy", "bootstrap", "localcloud")  # pyproject's packages
SKIPPED = ("__pycache__", ".pyc")


def read_stamp(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_stamp(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def sources_digest(repo: Path) -> str:
    """sha256 over the names and bytes of every file a release is built from (the packages, pyproject.toml)."""
    digest = hashlib.sha256()
    files = [repo / "pyproject.toml"] + sorted(
        p for package in PACKAGES for p in (repo / package).rglob("*")
        if p.is_file() and not any(part in SKIPPED or part.endswith(SKIPPED) for part in p.parts))
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def wall_digest(wall: Path) -> str:
    """sha256 of what a publish reads: canvas.json and items.csv, and each image's name, size and mtime."""
    digest = hashlib.sha256()
    for name in ("canvas.json", "items.csv"):
        digest.update(name.encode() + b"\0" + hashlib.sha256((wall / name).read_bytes()).digest())
    for path in sorted(p for p in wall.rglob("*") if p.is_file() and p.name not in ("canvas.json", "items.csv")):
        stat = path.stat()
        digest.update(f"{path.relative_to(wall)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PublishPlan:
    """What to do about the published dataset: ``publish`` or not, and why, in words."""

    publish: bool
    reason: str


def plan_publish(client, bucket: str, dataset: str, wall: Path, stamp_path: Path) -> PublishPlan:
    manifest = read_manifest(client, bucket, dataset)
    if manifest is None:
        return PublishPlan(True, "not published yet")
    stamp = read_stamp(stamp_path)
    if stamp is None:
        return PublishPlan(True, f"generation {manifest.generation} in S3 is not known here: publishing the wall "
                                 "(a diff, or nothing if it is the same)")
    if stamp.get("generation") != manifest.generation:
        return PublishPlan(False, f"generation {manifest.generation} in S3 was published from elsewhere after "
                                  f"this demo's generation {stamp.get('generation')}: serving it as it is (to "
                                  f"publish {wall} over it: source demo-work/env && .venv/bin/tiler publish "
                                  f"{wall})")
    if stamp.get("wall") != wall_digest(wall):
        return PublishPlan(True, f"{wall} changed since generation {manifest.generation}: publishing the diff")
    return PublishPlan(False, f"generation {manifest.generation} is this wall, already published")


def record_publish(stamp_path: Path, generation: int, wall: Path) -> None:
    write_stamp(stamp_path, {"generation": generation, "wall": wall_digest(wall)})


def release_is_current(client, bucket: str, repo: Path, stamp_path: Path) -> tuple[bool, str]:
    """(True, version) if S3's current release was made by this demo from these very sources."""
    stamp = read_stamp(stamp_path) or {}
    try:
        pointer = read_json(client, bucket, pointer_key("current")) or {}
    except GigatileError:  # unreadable: release afresh
        return False, ""
    version = pointer.get("version", "") if isinstance(pointer, dict) else ""
    same = bool(version) and stamp.get("version") == version and stamp.get("sources") == sources_digest(repo)
    return same, version


def record_release(client, bucket: str, repo: Path, stamp_path: Path, sources: str) -> str:
    """Remember the version now current and the digest of the ``sources`` it was built from."""
    pointer = read_json(client, bucket, pointer_key("current"))
    write_stamp(stamp_path, {"version": pointer["version"], "sources": sources})
    return pointer["version"]
