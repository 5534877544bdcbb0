"""Compiled kernels shipped with a release: used on this CPU, copied between releases, refused if damaged."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from datetime import UTC, datetime

import pytest

from bootstrap.errors import BootstrapError
from bootstrap.node.install import update_release
from bootstrap.node.kernels import _extract, cpu_key, listing_key
from bootstrap.release.publisher import publish_release
from bootstrap.s3io import put_json
from gigaformat.layout import NodeLayout
from tests.bootstrap.conftest import REPO


def kernel_files(release) -> list:
    return sorted(release.glob("lib/python*/site-packages/tiler/__pycache__/*.nb[ic]"))


def test_a_node_on_this_cpu_uses_the_kernels_of_the_release(s3_bucket, released_with_kernels, tmp_path):
    listing = s3_bucket.client.get_object(Bucket=s3_bucket.name,
                                          Key=listing_key(released_with_kernels.pointer.version))["Body"].read()
    assert cpu_key() in listing.decode()
    layout = NodeLayout(tmp_path / "node")

    result = update_release(s3_bucket.client, s3_bucket.name, "current", layout)

    release = layout.current.resolve()
    assert result.kernels == "release" and (release / ".warmed").is_file() and kernel_files(release)
    warm = subprocess.run([str(release / "bin" / "python"), "-m", "tiler.warmup"], capture_output=True,
                          text=True, cwd=release, env={**os.environ, "NUMBA_DEBUG_CACHE": "1"})
    assert warm.returncode == 0, warm.stderr
    assert "data loaded from" in warm.stdout and "data saved to" not in warm.stdout  # nothing compiled here


def test_a_release_without_kernels_gets_those_of_the_release_before(s3_bucket, released_with_kernels,
                                                                   project_wheel, tmp_path):
    layout = NodeLayout(tmp_path / "node")
    update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    publish_release(s3_bucket.client, s3_bucket.name, REPO, wheel=project_wheel, now=datetime(2030, 1, 1, tzinfo=UTC))

    result = update_release(s3_bucket.client, s3_bucket.name, "current", layout)

    assert result.kernels == "previous" and kernel_files(layout.current.resolve())
    assert not (layout.current.resolve() / ".warmed").exists()  # still warmed up: the sources may differ


def test_kernels_for_another_cpu_or_damaged_ones_are_not_used(s3_bucket, released, project_kernels, tmp_path):
    version = released.pointer.version
    put_json(s3_bucket.client, s3_bucket.name, listing_key(version),
             {"0" * 16: {"key": f"releases/{version}/kernels/x.tar.gz", "sha256": "0" * 64, "size": 1}})
    first = update_release(s3_bucket.client, s3_bucket.name, "current", NodeLayout(tmp_path / "a"))
    key = f"releases/{version}/kernels/{cpu_key()}.tar.gz"
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=project_kernels.read_bytes() + b"x")
    put_json(s3_bucket.client, s3_bucket.name, listing_key(version),
             {cpu_key(): {"key": key, "sha256": "0" * 64, "size": project_kernels.stat().st_size}})
    second = update_release(s3_bucket.client, s3_bucket.name, "current", NodeLayout(tmp_path / "b"))

    assert first.kernels == second.kernels == "none"
    assert not kernel_files(NodeLayout(tmp_path / "b").current.resolve())


def test_a_kernel_archive_may_only_hold_cache_files(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"print('owned')"
        info = tarfile.TarInfo("tiler/__init__.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "site").mkdir()
    with pytest.raises(BootstrapError, match="unexpected member 'tiler/__init__.py'"):
        _extract(archive, tmp_path / "site")
    assert not (tmp_path / "site" / "tiler").exists()
