"""Compile a release's render kernels on this machine and upload them beside the wheel (node side:
``bootstrap.node.kernels``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from bootstrap.errors import BootstrapError
from bootstrap.node.install import install_wheel, release_environment
from bootstrap.node.kernels import cache_files, cpu_key, listing_key, site_packages
from bootstrap.s3io import put_json, read_json, upload_file


def build_kernels(wheel: Path, work: Path, python: str = sys.executable) -> Path:
    """Compile the wheel's kernels for this machine (in a scratch install); returns a .tar.gz of the cache."""
    venv = work / "kernels-venv"
    install_wheel(wheel, venv, python)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "tiler.warmup"], capture_output=True, text=True,
                          cwd=venv, env=release_environment())
    if done.returncode != 0:
        raise BootstrapError(f"compiling the kernels of {wheel.name} failed: {done.stderr.strip()[-1500:]}")
    site = site_packages(venv)
    files = cache_files(site)
    if not files:
        raise BootstrapError(f"compiling the kernels of {wheel.name} left no numba cache in {site}")
    out = work / f"{cpu_key()}.tar.gz"
    with tarfile.open(out, "w:gz") as archive:
        for path in files:
            archive.add(path, arcname=path.relative_to(site).as_posix(), recursive=False)
    shutil.rmtree(venv, ignore_errors=True)
    return out


def publish_kernels(client, bucket: str, version: str, tarball: Path) -> dict:
    """Upload the kernels of one CPU kind for ``version`` and list them in its kernels.json."""
    cpu = tarball.name.removesuffix(".tar.gz")
    key = f"releases/{version}/kernels/{cpu}.tar.gz"
    sha256 = upload_file(client, bucket, key, tarball, "application/gzip")
    listing = read_json(client, bucket, listing_key(version)) or {}
    listing[cpu] = {"key": key, "sha256": sha256, "size": tarball.stat().st_size}
    put_json(client, bucket, listing_key(version), listing)
    return listing[cpu]
