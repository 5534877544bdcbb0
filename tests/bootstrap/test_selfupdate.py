"""The fresh bootstrap: one digest for sources and running code, a deterministic zipapp, and a node that
re-executes a published bootstrap exactly once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.node.selfupdate import PACKAGES, digest_of, package_sources, running_digest
from bootstrap.pointers import BOOTSTRAP_POINTER_KEY
from bootstrap.release.publisher import publish_bootstrap
from bootstrap.release.zipapp import build_pyz
from bootstrap.s3io import put_json
from tests.bootstrap.conftest import REPO, update_node


def test_the_running_code_and_its_sources_have_one_digest():
    assert running_digest() == digest_of(package_sources(REPO))


def test_the_zipapp_is_deterministic_and_knows_its_own_digest(tmp_path):
    one, two = tmp_path / "one.pyz", tmp_path / "two.pyz"
    digest = build_pyz(REPO, one)
    assert build_pyz(REPO, two) == digest and one.read_bytes() == two.read_bytes()
    code = (f"import sys; sys.path.insert(0, {str(one)!r}); "
            "import bootstrap, gigaformat, bootstrap.node.selfupdate as s; "
            "print(bootstrap.__file__, gigaformat.__file__, s.running_digest())")
    inside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    where, format_where, seen = inside.stdout.split()
    assert where.startswith(str(one)) and format_where.startswith(str(one)) and seen == digest, inside.stderr
    usage = subprocess.run([sys.executable, str(one), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 0 and "node-bootstrap" in usage.stdout


def fresh_package(tmp_path: Path, note: str) -> Path:
    """A copy of the bootstrap's packages that differs by a comment: another digest (the project folder)."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / note / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / note / "bootstrap" / "__init__.py").open("a") as handle:
        handle.write(f"# {note}\n")
    return tmp_path / note


def reading_a_newer_key(package: Path, key: str) -> Path:
    """``package`` with a bootstrap whose user-data has one more key, ``key`` (a string, "" by default)."""
    source = package / "bootstrap" / "node" / "userdata.py"
    text = source.read_text()
    anchor = "    public_url: str = \"\""
    assert anchor in text
    source.write_text(text.replace(anchor, f"{anchor}\n    {key}: str = \"\"", 1))
    return package


def test_user_data_of_a_newer_bootstrap_brings_the_node_up_through_the_published_one(s3_bucket, released,
                                                                                     tmp_path):
    newer = reading_a_newer_key(fresh_package(tmp_path, "newer"), "shelf_colour")
    pointer = publish_bootstrap(s3_bucket.client, s3_bucket.name, newer, tmp_path)
    put_json(s3_bucket.client, s3_bucket.name, BOOTSTRAP_POINTER_KEY, pointer.to_json())

    done, status = update_node(s3_bucket, tmp_path / "node", newer_keys={"shelf_colour": "oak"})

    assert done.returncode == 0, done.stderr
    assert "unknown key(s) shelf_colour" in done.stderr and "looking for a fresher bootstrap" in done.stderr
    assert done.stderr.count("re-executing fresh bootstrap") == 1
    assert status["bootstrap_digest"] == pointer.digest and status["release"] == released.pointer.version


@pytest.mark.parametrize("published", [False, True])
def test_user_data_no_published_bootstrap_reads_fails_the_node_naming_the_key(s3_bucket, released, tmp_path,
                                                                           published):
    if published:  # a fresher bootstrap, which does not know the key either
        pointer = publish_bootstrap(s3_bucket.client, s3_bucket.name, fresh_package(tmp_path, "other"), tmp_path)
        put_json(s3_bucket.client, s3_bucket.name, BOOTSTRAP_POINTER_KEY, pointer.to_json())

    done, status = update_node(s3_bucket, tmp_path / "node", newer_keys={"shelf_colour": "oak"})

    assert done.returncode != 0
    assert "unknown key(s) shelf_colour" in done.stderr and "no fresher bootstrap that reads it" in done.stderr
    assert done.stderr.count("re-executing fresh bootstrap") == (1 if published else 0)
    assert status["state"] == "failed" and "shelf_colour" in status["error"]
    assert not status.get("release")  # nothing installed from user-data it could not read


def test_a_node_runs_the_published_bootstrap_once(s3_bucket, released, tmp_path):
    pointer = publish_bootstrap(s3_bucket.client, s3_bucket.name, fresh_package(tmp_path, "fresh"), tmp_path)
    put_json(s3_bucket.client, s3_bucket.name, BOOTSTRAP_POINTER_KEY, pointer.to_json())

    done, status = update_node(s3_bucket, tmp_path / "node")

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("re-executing fresh bootstrap") == 1
    assert f"running fresh bootstrap digest={pointer.digest[:16]}" in done.stderr
    assert status["bootstrap_digest"] == pointer.digest and status["release"] == released.pointer.version
    assert (tmp_path / "node" / "app" / "bootstrap" / f"{pointer.digest}.pyz").is_file()


def test_two_bootstraps_that_disagree_on_their_digest_do_not_loop(s3_bucket, released, tmp_path):
    pointer = publish_bootstrap(s3_bucket.client, s3_bucket.name, fresh_package(tmp_path, "loop"), tmp_path)
    claimed = {**pointer.to_json(), "digest": "e" * 64}  # what the running code will never compute
    put_json(s3_bucket.client, s3_bucket.name, BOOTSTRAP_POINTER_KEY, claimed)

    done, status = update_node(s3_bucket, tmp_path / "node")

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("re-executing fresh bootstrap") == 1
    assert "not re-executing again" in done.stderr
    assert status["release"] == released.pointer.version


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_a_damaged_fresh_bootstrap_is_not_run(s3_bucket, released, tmp_path, field):
    pointer = publish_bootstrap(s3_bucket.client, s3_bucket.name, fresh_package(tmp_path, "bad"), tmp_path)
    wrong = {**pointer.to_json(), field: "0" * 64 if field == "sha256" else pointer.size + 1}
    put_json(s3_bucket.client, s3_bucket.name, BOOTSTRAP_POINTER_KEY, wrong)

    done, status = update_node(s3_bucket, tmp_path / "node")

    assert done.returncode == 0, done.stderr
    assert "fresh bootstrap unusable; running our own" in done.stderr and "re-executing" not in done.stderr
    assert status["bootstrap_digest"] == running_digest() and status["release"] == released.pointer.version
    assert json.loads((tmp_path / "node" / "run" / "status.json").read_text())["state"] == "updated"
