"""scripts/demo_reuse.py: a rerun publishes only what changed, never over a publish made from elsewhere, and
releases again only when the sources changed."""

from __future__ import annotations

import shutil
from pathlib import Path

from tiler.generate import generate_wall
from tiler.publish import publish

from demo_reuse import plan_publish, record_publish, sources_digest, wall_digest

REPO = Path(__file__).resolve().parents[2]


def test_publish_plan_follows_the_wall_and_what_s3_holds(s3_bucket, tmp_path: Path):
    wall, stamp = tmp_path / "wall", tmp_path / "published.json"
    generate_wall(wall, 0.005)
    client, bucket = s3_bucket.client, s3_bucket.name
    first = plan_publish(client, bucket, "covers", wall, stamp)
    assert first.publish and first.reason == "not published yet"
    record_publish(stamp, publish(wall, "covers", bucket, client).generation, wall)

    same = plan_publish(client, bucket, "covers", wall, stamp)
    assert not same.publish and "already published" in same.reason

    lines = (wall / "items.csv").read_text().splitlines(keepends=True)
    (wall / "items.csv").write_text("".join([lines[0], *lines[2:], lines[1]]))  # redrawn in another order
    changed = plan_publish(client, bucket, "covers", wall, stamp)
    assert changed.publish and "changed since generation 1" in changed.reason

    elsewhere = tmp_path / "elsewhere"
    generate_wall(elsewhere, 0.005, seed=2)
    assert publish(elsewhere, "covers", bucket, client).generation == 2  # someone else's publish
    kept = plan_publish(client, bucket, "covers", wall, stamp)
    assert not kept.publish and "published from elsewhere" in kept.reason and "generation 2" in kept.reason


def test_the_sources_digest_changes_with_a_package_file_only(tmp_path: Path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv", "node_modules", "demo-work",
                                                              "local-nodes", "bench", "tests", "vendor"))
    before = sources_digest(copy)
    (copy / "README.md").write_text("edited")
    (copy / "tiler" / "__pycache__").mkdir(exist_ok=True)
    (copy / "tiler" / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    assert sources_digest(copy) == before
    (copy / "tiler" / "serve.py").write_text((copy / "tiler" / "serve.py").read_text() + "\n# edited\n")
    assert sources_digest(copy) != before


def test_the_wall_digest_sees_the_items_and_the_images(tmp_path: Path):
    wall = tmp_path / "wall"
    generate_wall(wall, 0.002)
    before = wall_digest(wall)
    image = next((wall / "covers").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert wall_digest(wall) != before
