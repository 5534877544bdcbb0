"""Published test datasets for the boxlink tests: a small generated wall and edits that make diffs."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from boxlink.remote import RequestCounter
from boxlink.runner import Node
from boxlink.settings import MB, Settings, TransferPolicy
from gigaformat.s3 import read_manifest
from tiler.publish import PublishResult, publish

DATASET = "covers"
Row = dict[str, str]


def copy_wall(wall: Path, dest: Path) -> Path:
    shutil.copytree(wall, dest)
    return dest


def read_rows(source: Path) -> list[Row]:
    with (source / "items.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(source: Path, rows: list[Row]) -> None:
    with (source / "items.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["id", "x", "y", "width", "height",
                                                                                "image"])
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class Edit:
    """What ``small_edit`` did: the rectangles (x, y, w, h) of canvas whose pixels changed."""

    changed: tuple[int, int, int, int]  # an item now showing another cover
    removed: tuple[int, int, int, int]  # an item gone (background or what was beneath shows)
    added: tuple[int, int, int, int]  # a new item, drawn over an existing one


def _rect(row: Row) -> tuple[int, int, int, int]:
    return int(row["x"]), int(row["y"]), int(row["width"]), int(row["height"])


def small_edit(source: Path) -> Edit:
    """Change one item's cover, delete one item, add one item: a small diff."""
    rows = read_rows(source)
    changed, removed, host = rows[10], rows[40], rows[70]
    images = sorted({r["image"] for r in rows})
    changed["image"] = next(i for i in images if i != changed["image"])
    added = {**host, "id": "added-1", "image": next(i for i in reversed(images) if i != host["image"])}
    rows = [r for r in rows if r is not removed] + [added]
    write_rows(source, rows)
    return Edit(_rect(changed), _rect(removed), _rect(added))


def big_edit(source: Path) -> None:
    """Give every other item another cover: a diff about half the snapshot's size, which still uses
    the snapshot's pack for the other items."""
    rows = read_rows(source)
    images = sorted({r["image"] for r in rows})
    for row in rows[::2]:
        row["image"] = images[(images.index(row["image"]) + 1) % len(images)]
    write_rows(source, rows)


def publish_source(source: Path, bucket, snapshot: bool = False, store: str = "auto") -> PublishResult:
    result = publish(source, DATASET, bucket.name, bucket.client, snapshot=snapshot, store=store)
    assert result.kinds, "nothing was published"
    return result


def make_node(root: Path, bucket, **transfer) -> tuple[Node, RequestCounter]:
    """An in-process boxlink for ``root`` using the fixture bucket's client; counts its S3 calls."""
    counter = RequestCounter()
    counter.attach(bucket.client)
    policy = TransferPolicy(**{"concurrency": 8, "chunk_bytes": 8 * MB, "backoff_seconds": 0.05, **transfer})
    settings = Settings(root=root, bucket=bucket.name, instance_id="test-node", interval=0.3, transfer=policy)
    return Node(settings, bucket.client, counter), counter


def documents(bucket) -> int:
    """How many of the published snapshot's objects are documents (its state, its tile index), not packs."""
    manifest = read_manifest(bucket.client, bucket.name, DATASET)
    return sum(not o.key.endswith(".bin") for o in manifest.snapshot.objects)
