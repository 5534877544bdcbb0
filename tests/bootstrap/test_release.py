"""``node-bootstrap release``: the wheel, the fresh bootstrap, then the pointer (in that order); rollback."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from bootstrap.errors import BootstrapError
from bootstrap.pointers import BootstrapPointer, ReleasePointer
from bootstrap.release.publisher import publish_release, rollback
from tests.bootstrap.conftest import REPO
from tests.processes import BIN


def read(bucket, key: str) -> bytes:
    return bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()


def read_json(bucket, key: str):
    return json.loads(read(bucket, key))


class Recording:
    """An S3 client that remembers the order of its writes."""

    def __init__(self, client):
        self.client = client
        self.writes: list[str] = []

    def put_object(self, **kwargs):
        self.writes.append(kwargs["Key"])
        return self.client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_the_wheel_holds_every_package_and_the_console_scripts(project_wheel):
    with zipfile.ZipFile(project_wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"tiler/serve.py", "tiler/warmup.py", "boxlink/cli.py", "bootstrap/cli.py", "bootstrap/node/lifecycle.py",
            "gigaformat/manifest.py", "proxy/cli.py"} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    for script in ("tiler = tiler.cli:main", "boxlink = boxlink.cli:entry", "node-bootstrap = bootstrap.cli:main"):
        assert script in entry_points


def test_the_wheel_holds_the_packages_data_files_too(project_wheel):
    """A node runs only what the wheel holds: the viewer's files must travel with the code."""
    with zipfile.ZipFile(project_wheel) as wheel:
        names = set(wheel.namelist())
    data = {p.relative_to(REPO).as_posix() for package in ("tiler", "boxlink", "proxy", "bootstrap")
            for p in (REPO / package).rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc", ".md")
            and "__pycache__" not in p.parts}
    assert data and data <= names, sorted(data - names)[:10]


def test_release_uploads_bundle_and_bootstrap_before_the_pointer(s3_bucket, project_wheel):
    client = Recording(s3_bucket.client)
    done = publish_release(client, s3_bucket.name, REPO, wheel=project_wheel)
    pointer, boot = done.pointer, done.bootstrap
    assert client.writes == [pointer.key, boot.key, "bootstrap/node-bootstrap.pyz", "bootstrap/current.json",
                             "releases/current.json", "releases/history.json"]
    assert pointer.key == f"releases/{pointer.version}/{project_wheel.name}"
    assert pointer.version.startswith("0.1.0-")
    body = read(s3_bucket, pointer.key)
    assert (len(body), hashlib.sha256(body).hexdigest()) == (pointer.size, pointer.sha256)
    assert ReleasePointer.from_json(read_json(s3_bucket, "releases/current.json")) == pointer
    assert BootstrapPointer.from_json(read_json(s3_bucket, "bootstrap/current.json")) == boot
    pyz = read(s3_bucket, boot.key)
    assert hashlib.sha256(pyz).hexdigest() == boot.sha256 and pyz == read(s3_bucket, "bootstrap/node-bootstrap.pyz")
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=pointer.key)
    assert head["Metadata"]["sha256"] == pointer.sha256


def test_releases_get_their_own_versions_and_rollback_goes_back_one_at_a_time(s3_bucket, project_wheel):
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    first, second, third = (publish_release(s3_bucket.client, s3_bucket.name, REPO, wheel=project_wheel,
                                            now=now + timedelta(minutes=i)) for i in range(3))
    assert len({first.pointer.version, second.pointer.version, third.pointer.version}) == 3

    back = rollback(s3_bucket.client, s3_bucket.name)
    assert back.pointer == second.pointer
    assert read_json(s3_bucket, "releases/current.json") == second.pointer.to_json()
    assert rollback(s3_bucket.client, s3_bucket.name).pointer == first.pointer
    with pytest.raises(BootstrapError, match="nothing to roll back to"):
        rollback(s3_bucket.client, s3_bucket.name)
    assert read_json(s3_bucket, "releases/current.json") == first.pointer.to_json()
    history = read_json(s3_bucket, "releases/history.json")
    assert [e["version"] for e in history["channels"]["current"]] == [first.pointer.version,
                                                                       second.pointer.version,
                                                                       third.pointer.version]
    assert [(r["from"], r["to"]) for r in history["rollbacks"]] == [
        (third.pointer.version, second.pointer.version), (second.pointer.version, first.pointer.version)]


def test_channels_are_separate(s3_bucket, project_wheel):
    stable = publish_release(s3_bucket.client, s3_bucket.name, REPO, wheel=project_wheel)
    canary = publish_release(s3_bucket.client, s3_bucket.name, REPO, channel="canary", wheel=project_wheel,
                             now=datetime(2030, 1, 1, tzinfo=UTC))
    assert read_json(s3_bucket, "releases/current.json")["version"] == stable.pointer.version
    assert read_json(s3_bucket, "releases/canary.json")["version"] == canary.pointer.version
    with pytest.raises(BootstrapError, match="first on channel 'canary'"):
        rollback(s3_bucket.client, s3_bucket.name, "canary")


def test_release_command_and_its_errors(s3_bucket, project_wheel):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "node-bootstrap"), "release", "--bucket", s3_bucket.name, *args],
                              capture_output=True, text=True, env=s3_bucket.env, timeout=120)

    early = cli("--rollback")
    done = cli("--wheel", str(project_wheel), "--no-kernels")
    assert early.returncode == 1 and "nothing released on channel 'current'" in early.stderr
    assert "Traceback" not in early.stderr
    assert done.returncode == 0, done.stderr
    version = read_json(s3_bucket, "releases/current.json")["version"]
    assert f"released {version} on channel current" in done.stdout


@pytest.mark.parametrize(("doc", "message"), [
    ({"version": "1", "key": "releases/1/a.whl", "sha256": "0" * 64}, "size is missing"),
    ({"version": "../x", "key": "releases/1/a.whl", "sha256": "0" * 64, "size": 1}, "not a safe name"),
    ({"version": "1", "key": "elsewhere/a.whl", "sha256": "0" * 64, "size": 1}, "is not under releases/"),
    ({"version": "1", "key": "releases/1/a.whl", "sha256": "abc", "size": 1}, "not 64 lowercase hex"),
    ({"version": "1", "key": "releases/1/a.whl", "sha256": "0" * 64, "size": 0}, "not a positive"),
    (["1"], "expected a JSON object"),
])
def test_malformed_pointers_are_refused(doc, message):
    with pytest.raises(BootstrapError, match=message):
        ReleasePointer.from_json(doc)


def test_release_to_a_missing_bucket_or_without_credentials_fails_before_building(s3_bucket, tmp_path):
    def cli(bucket: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        # an empty --source: were the wheel built first, the error would be "has no pyproject.toml"
        return subprocess.run([str(BIN / "node-bootstrap"), "release", "--bucket", bucket, "--source",
                               str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)

    missing = cli("no-such-bucket-here", s3_bucket.env)
    assert missing.returncode == 1, missing.stderr
    assert "bucket 'no-such-bucket-here' does not exist; create it first" in missing.stderr
    anonymous = {k: v for k, v in s3_bucket.env.items() if not k.startswith("AWS_") or k == "AWS_ENDPOINT_URL_S3"}
    no_keys = cli(s3_bucket.name, {**anonymous, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                   "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"})
    assert no_keys.returncode == 1 and "no AWS credentials found" in no_keys.stderr, no_keys.stderr
    assert "pyproject.toml" not in missing.stderr + no_keys.stderr and "Traceback" not in missing.stderr
