"""``node-bootstrap release``: build this project's wheel and the fresh bootstrap, upload both, and only
then rewrite ``releases/<channel>.json``; ``rollback`` points it back at the release before."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from bootstrap.errors import BootstrapError
from bootstrap.pointers import (
    BOOTSTRAP_LATEST_KEY,
    BOOTSTRAP_POINTER_KEY,
    HISTORY_KEY,
    BootstrapPointer,
    History,
    ReleasePointer,
    bootstrap_key,
    pointer_key,
)
from bootstrap.release.kernels import build_kernels, publish_kernels
from bootstrap.release.zipapp import build_pyz
from bootstrap.s3io import check_bucket, file_sha256, put_json, read_json, upload_file
from gigaformat.clock import compact, iso
from gigaformat.s3 import describe

log = logging.getLogger(__name__)

# What a wheel build does not need from the source folder (copied aside so the tree stays untouched).
NOT_BUILT = (".git", ".venv", "venv", "tests", "bench", "build", "dist", "docs", "node_modules", "demo-work",
             "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", ".ci", "*.pyc")


@dataclass(frozen=True)
class Released:
    pointer: ReleasePointer
    bootstrap: BootstrapPointer | None  # None: a rollback to a release recorded without one
    channel: str


def project_version(source: Path) -> str:
    try:
        return str(tomllib.loads((source / "pyproject.toml").read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise BootstrapError(f"{source}/pyproject.toml: cannot read project.version ({exc})") from None


def build_wheel(source: Path, out_dir: Path, python: str = sys.executable) -> Path:
    """Build the project at ``source`` into a wheel in ``out_dir`` (pip, no dependencies); returns it."""
    if not (source / "pyproject.toml").is_file():
        raise BootstrapError(f"{source} has no pyproject.toml: point --source at the project folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gigatile-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*NOT_BUILT), symlinks=True)
        done = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                               "-w", str(out_dir), str(copy)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BootstrapError(f"pip wheel failed for {source} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    wheels = sorted(out_dir.glob("*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise BootstrapError(f"pip wheel wrote no wheel into {out_dir}")
    return wheels[-1]


def release_version(package_version: str, wheel_sha256: str, now: datetime) -> str:
    """``<package version>-<UTC time>-<sha256 prefix>``: every release gets its own name."""
    return f"{package_version}-{compact(now)}-{wheel_sha256[:8]}"


def publish_bootstrap(client, bucket: str, source: Path, work: Path) -> BootstrapPointer:
    """Upload the zipapp built from the project folder ``source`` (versioned key, then the stable name); does
    not point at it."""
    pyz = work / "node-bootstrap.pyz"
    digest = build_pyz(source, pyz)
    key = bootstrap_key(digest)
    sha256 = upload_file(client, bucket, key, pyz, "application/zip")
    upload_file(client, bucket, BOOTSTRAP_LATEST_KEY, pyz, "application/zip")
    return BootstrapPointer(digest=digest, key=key, sha256=sha256, size=pyz.stat().st_size)


def publish_release(client, bucket: str, source: Path, channel: str = "current", wheel: Path | None = None,
                    now: datetime | None = None, kernels: Path | None = None) -> Released:
    """Release the project at ``source`` (or ``wheel``, built from it) on ``channel``, with its compiled
    ``kernels`` for this machine's CPU if given (bootstrap.kernels).

    Order is the contract: the bundle and its kernels, then the fresh bootstrap, then ``bootstrap/current.json``,
    then ``releases/<channel>.json`` (a node never sees a pointer to something half uploaded), then history.
    """
    now = now or datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="gigatile-release-") as tmp:
        work = Path(tmp)
        wheel = wheel or build_wheel(source, work / "dist")
        sha256 = file_sha256(wheel)
        version = release_version(project_version(source), sha256, now)
        key = f"releases/{version}/{wheel.name}"
        upload_file(client, bucket, key, wheel, "application/zip")
        if kernels is not None:
            publish_kernels(client, bucket, version, kernels)
        pointer = ReleasePointer(version=version, key=key, sha256=sha256, size=wheel.stat().st_size)
        boot = publish_bootstrap(client, bucket, source, work)
    history = History.from_json(read_json(client, bucket, HISTORY_KEY))
    put_json(client, bucket, BOOTSTRAP_POINTER_KEY, boot.to_json())
    put_json(client, bucket, pointer_key(channel), pointer.to_json())
    history.add(channel, {**pointer.to_json(), "bootstrap": boot.to_json(),
                          "released": iso(now)})
    put_json(client, bucket, HISTORY_KEY, history.to_json())
    log.info("released version=%s channel=%s key=s3://%s/%s bootstrap=%s", version, channel, bucket, key,
             boot.digest[:16])
    return Released(pointer, boot, channel)


def build_and_publish(client, bucket: str, source: Path, channel: str = "current", wheel: Path | None = None,
                      with_kernels: bool = True) -> Released:
    """What ``node-bootstrap release`` does: build the wheel (unless given) and, unless told not to, its
    kernels for this machine's CPU, then ``publish_release``. The bucket is checked first: a wrong bucket or
    missing credentials fail at once, not after the build."""
    check_bucket(client, bucket)
    with tempfile.TemporaryDirectory(prefix="gigatile-build-") as tmp:
        work = Path(tmp)
        wheel = wheel or build_wheel(source, work / "dist")
        kernels = build_kernels(wheel, work) if with_kernels else None
        return publish_release(client, bucket, source, channel, wheel=wheel, kernels=kernels)


def rollback(client, bucket: str, channel: str = "current", now: datetime | None = None) -> Released:
    """Point ``releases/<channel>.json`` (and the fresh bootstrap) back at the release before the current one."""
    now = now or datetime.now(UTC)
    check_bucket(client, bucket)
    key = pointer_key(channel)
    doc = read_json(client, bucket, key)
    if doc is None:
        raise BootstrapError(f"nothing released on channel {channel!r}: s3://{bucket}/{key} does not exist")
    current = ReleasePointer.from_json(doc, f"s3://{bucket}/{key}")
    history = History.from_json(read_json(client, bucket, HISTORY_KEY))
    entry = history.before(channel, current.version)
    target = ReleasePointer.from_json({k: entry.get(k) for k in ("version", "key", "sha256", "size")},
                                      f"{HISTORY_KEY} entry {entry.get('version')!r}")
    try:
        client.head_object(Bucket=bucket, Key=target.key)
    except (ClientError, BotoCoreError) as exc:
        raise BootstrapError(f"cannot roll back to {target.version}: s3://{bucket}/{target.key} is not "
                             f"there ({describe(exc)})") from None
    boot = BootstrapPointer.from_json(entry["bootstrap"]) if entry.get("bootstrap") else None
    if boot is not None:
        put_json(client, bucket, BOOTSTRAP_POINTER_KEY, boot.to_json())
    put_json(client, bucket, key, target.to_json())
    history.rollbacks.append({"channel": channel, "from": current.version, "to": target.version,
                              "at": iso(now)})
    put_json(client, bucket, HISTORY_KEY, history.to_json())
    log.info("rolled back channel=%s from=%s to=%s", channel, current.version, target.version)
    return Released(target, boot, channel)
