"""Compiled render kernels on a node: the ones shipped with a release, or those of the release before.

The render core is numba code cached beside its sources (``tiler/__pycache__/*.nbi|*.nbc``). numba keys a
cache entry by the sha256 of the source file, the exact CPU target and the numba version, and ignores what
does not match, so copying entries is always safe: at worst they go unused and the kernels compile as before.

- ``node-bootstrap release`` uploads them as ``releases/<version>/kernels/<cpu>.tar.gz``, listed in
  ``releases/<version>/kernels.json`` (``{"<cpu>": {"key", "sha256", "size"}}``; bootstrap.release.kernels).
- A node installing that release fetches the tarball for its own ``cpu_key()`` (verified like the wheel),
  else copies the entries of the release it ran before (kernels unchanged between releases stay valid).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import sys
import tarfile
from pathlib import Path

from bootstrap.errors import BootstrapError
from bootstrap.s3io import download_verified, read_json

log = logging.getLogger(__name__)

SUFFIXES = (".nbi", ".nbc")


def cpu_key(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Which machines share compiled kernels: architecture, CPU model and flags, Python version."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith(("flags", "Features"))), "")
    python = f"py{sys.version_info[0]}{sys.version_info[1]}"
    text = f"{platform.machine()}|{model}|{' '.join(sorted(flags.split()))}|{python}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def listing_key(version: str) -> str:
    return f"releases/{version}/kernels.json"


def cache_files(site_packages: Path) -> list[Path]:
    return sorted(p for p in site_packages.rglob("*") if p.suffix in SUFFIXES and p.parent.name == "__pycache__")


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise BootstrapError(f"{venv} has no lib/python*/site-packages")
    return found[0]


def _extract(tarball: Path, site_packages: Path) -> int:
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or ".." in parts or member.name.startswith("/") \
                    or Path(member.name).suffix not in SUFFIXES or "__pycache__" not in parts:
                raise BootstrapError(f"{tarball.name}: unexpected member {member.name!r}; refusing the kernels")
        archive.extractall(site_packages, filter="data")
        count = len(archive.getmembers())
    return count


def install_kernels(client, bucket: str, version: str, release_dir: Path, downloads: Path) -> bool:
    """Put the release's kernels for this CPU into ``release_dir``; False if none were shipped for it."""
    listing = read_json(client, bucket, listing_key(version))
    entry = (listing or {}).get(cpu_key())
    if not entry:
        return False
    try:
        tarball = download_verified(client, bucket, str(entry["key"]), downloads / "kernels.tar.gz",
                                    str(entry["sha256"]), int(entry["size"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise BootstrapError(f"{listing_key(version)} is malformed ({exc})") from None
    try:
        count = _extract(tarball, site_packages(release_dir))
    finally:
        tarball.unlink(missing_ok=True)
    log.info("kernels installed version=%s cpu=%s files=%d", version, cpu_key(), count)
    return True


def copy_kernels(source_release: Path, target_release: Path) -> int:
    """Copy the compiled kernels of another installed release (numba uses those whose sources are unchanged)."""
    try:
        source, target = site_packages(source_release), site_packages(target_release)
    except BootstrapError:
        return 0
    copied = 0
    for path in cache_files(source):
        dest = target / path.relative_to(source)
        if dest.parent.parent.is_dir():  # the package exists in the new release
            dest.parent.mkdir(exist_ok=True)
            shutil.copy2(path, dest)
            copied += 1
    return copied
