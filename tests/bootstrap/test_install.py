"""The update step: verified download, install beside the others, atomic switch, refusal of bad bundles."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootstrap.errors import BootstrapError
from bootstrap.node.install import INSTALLED, install_wheel, update_release
from bootstrap.pointers import ReleasePointer
from bootstrap.release.publisher import publish_release
from bootstrap.s3io import put_json
from gigaformat.layout import NodeLayout
from tests.bootstrap.conftest import REPO


def test_update_installs_the_release_and_switches_current(s3_bucket, released, tmp_path):
    layout = NodeLayout(tmp_path / "node")
    result = update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    version = released.pointer.version
    assert (result.version, result.previous, result.downloaded) == (version, None, True)
    assert layout.current.readlink().as_posix() == f"releases/{version}"
    assert (layout.release_dir(version) / INSTALLED).is_file()
    probe = subprocess.run([str(layout.current_bin("tiler")), "--help"], capture_output=True, text=True)
    assert probe.returncode == 0 and "serve" in probe.stdout
    imported = subprocess.run([str(layout.current / "bin" / "python"), "-c", "import tiler; print(tiler.__file__)"],
                              capture_output=True, text=True, cwd=layout.root)
    assert Path(imported.stdout.strip()).resolve().is_relative_to(layout.release_dir(version)), imported.stdout
    assert not any(layout.downloads.rglob("*"))

    again = update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    assert (again.version, again.downloaded) == (version, False)


def test_a_new_release_becomes_current_and_the_old_one_previous(s3_bucket, released, project_wheel, tmp_path):
    layout = NodeLayout(tmp_path / "node")
    update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    newer = publish_release(s3_bucket.client, s3_bucket.name, REPO, wheel=project_wheel,
                            now=datetime(2030, 1, 1, tzinfo=UTC))
    result = update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    assert (result.version, result.previous) == (newer.pointer.version, released.pointer.version)
    assert layout.current_version() == newer.pointer.version
    assert layout.previous.readlink().as_posix() == f"releases/{released.pointer.version}"
    assert (layout.release_dir(released.pointer.version) / INSTALLED).is_file()  # kept for rollback


def _corrupt_pointer(bucket, pointer: ReleasePointer, project_wheel) -> ReleasePointer:
    """Release the wheel again under a new version, but announce a wrong sha256 for it."""
    version = pointer.version + "-b"
    key = f"releases/{version}/{project_wheel.name}"
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=project_wheel.read_bytes())
    bad = ReleasePointer(version, key, hashlib.sha256(b"something else").hexdigest(), pointer.size)
    put_json(bucket.client, bucket.name, "releases/current.json", bad.to_json())
    return bad


def _tamper_object(bucket, pointer: ReleasePointer, project_wheel) -> ReleasePointer:
    """Announce the right sha256 and size, but the object in S3 was changed (one byte more)."""
    version = pointer.version + "-c"
    key = f"releases/{version}/{project_wheel.name}"
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=project_wheel.read_bytes() + b"\0")
    good = ReleasePointer(version, key, pointer.sha256, pointer.size)
    put_json(bucket.client, bucket.name, "releases/current.json", good.to_json())
    return good


@pytest.mark.parametrize("spoil", [_corrupt_pointer, _tamper_object], ids=["wrong-sha256", "tampered-object"])
def test_a_bad_bundle_is_refused_before_anything_is_installed(s3_bucket, released, project_wheel, tmp_path,
                                                               spoil):
    layout = NodeLayout(tmp_path / "node")
    update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    bad = spoil(s3_bucket, released.pointer, project_wheel)

    with pytest.raises(BootstrapError) as caught:
        update_release(s3_bucket.client, s3_bucket.name, "current", layout)

    assert "refusing it" in str(caught.value) and bad.key in str(caught.value)
    assert layout.current_version() == released.pointer.version
    assert not layout.release_dir(bad.version).exists()
    assert not any(layout.downloads.rglob("*"))


def test_a_reused_version_name_is_refused(s3_bucket, released, tmp_path):
    layout = NodeLayout(tmp_path / "node")
    update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    reused = ReleasePointer(released.pointer.version, released.pointer.key, "f" * 64, released.pointer.size)
    put_json(s3_bucket.client, s3_bucket.name, "releases/current.json", reused.to_json())
    with pytest.raises(BootstrapError, match="must never be reused"):
        update_release(s3_bucket.client, s3_bucket.name, "current", layout)
    assert (layout.release_dir(released.pointer.version) / INSTALLED).is_file()


def test_no_release_is_a_clear_error(s3_bucket, tmp_path):
    with pytest.raises(BootstrapError, match="node-bootstrap release --bucket"):
        update_release(s3_bucket.client, s3_bucket.name, "current", NodeLayout(tmp_path / "node"))


def test_release_programs_keep_their_own_import_path_and_kernel_cache():
    from bootstrap.node.install import release_environment

    env = release_environment({"PYTHONPATH": "/elsewhere", "PYTHONHOME": "/x", "NUMBA_CACHE_DIR": "/tmp/nb",
                               "AWS_DEFAULT_REGION": "eu-west-1"})
    assert env == {"AWS_DEFAULT_REGION": "eu-west-1"}  # kernels shipped beside the sources stay the ones used


def test_a_wheel_whose_files_disagree_with_its_record_is_not_installed(project_wheel, tmp_path):
    """The wheel's RECORD (sha256 of each file) is checked as it is installed: a changed module is refused."""
    spoiled = tmp_path / project_wheel.name
    with zipfile.ZipFile(project_wheel) as source, zipfile.ZipFile(spoiled, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            out.writestr(item, data + b"\n# changed\n" if item.filename == "tiler/serve.py" else data)
    with pytest.raises(BootstrapError, match="installing"):
        install_wheel(spoiled, tmp_path / "release")
    install_wheel(project_wheel, tmp_path / "good")  # the same wheel unchanged installs
    assert (tmp_path / "good" / "bin" / "tiler").is_file()
