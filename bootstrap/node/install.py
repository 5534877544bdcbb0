"""The update step on a node: read ``releases/<channel>.json``, download the bundle, verify its size and
sha256 before anything is installed, install it beside the others, and switch ``<root>/app/current``.

A release is a venv at ``<root>/app/releases/<version>/`` holding the wheel (no dependencies): the machine
image provides them, as Zoomii's image provided the JVM. The venv sees the image's packages through
``--system-site-packages``, and, when node-bootstrap itself runs in a venv (a local node), through a
``.pth`` line naming that venv's site-packages; ``.pth`` files found there are not run, so an editable
checkout cannot shadow the release. ``.installed`` is written last: a folder without it is an interrupted
install and is redone. ``current`` and ``previous`` are symlinks switched by rename.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile

from bootstrap.errors import BootstrapError
from bootstrap.node.kernels import copy_kernels, install_kernels
from bootstrap.pointers import ReleasePointer, pointer_key
from bootstrap.s3io import download_verified, read_json
from gigaformat.durable import point_link, write_atomic
from gigaformat.layout import RELEASE_WARMED as WARMED
from gigaformat.layout import NodeLayout

log = logging.getLogger(__name__)

INSTALLED = ".installed"
PROGRAMS = ("tiler", "boxlink")  # what the supervisor starts from <root>/app/current/bin/
KEEP_RELEASES = 3
PYTHON_PATHS = ("PYTHONPATH", "PYTHONHOME")  # a release runs its own code: nothing may be put before it
# ... and its own compiled kernels, cached beside its sources (where shipped kernels are unpacked).
NOT_INHERITED = (*PYTHON_PATHS, "NUMBA_CACHE_DIR")


def release_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment programs of a release run in: ours, minus what would change their import path or
    move their kernel cache."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in NOT_INHERITED}


@dataclass(frozen=True)
class UpdateResult:
    version: str
    previous: str | None  # what ``current`` pointed at before
    downloaded: bool      # False: this release was already installed here
    seconds: float
    kernels: str = "none"  # compiled kernels: "release" (shipped for this CPU), "previous" (copied), "none"


def read_pointer(client, bucket: str, channel: str) -> ReleasePointer:
    key = pointer_key(channel)
    doc = read_json(client, bucket, key)
    if doc is None:
        raise BootstrapError(f"no release on channel {channel!r}: s3://{bucket}/{key} does not exist "
                             "(publish one with: node-bootstrap release --bucket BUCKET)")
    return ReleasePointer.from_json(doc, f"s3://{bucket}/{key}")


def installed_record(release_dir: Path) -> dict | None:
    try:
        return json.loads((release_dir / INSTALLED).read_bytes())
    except (OSError, ValueError):
        return None


def image_site_packages() -> list[str]:
    """The running environment's site-packages when it is a venv (else the image's system ones suffice)."""
    if sys.prefix == sys.base_prefix:
        return []
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def _run(args: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, env=release_environment(), cwd=cwd)
    if done.returncode != 0:
        raise BootstrapError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    return done


def install_wheel(wheel: Path, target: Path, python: str = sys.executable) -> None:
    """Make ``target`` a venv with ``wheel`` installed and checked; BootstrapError if anything fails."""
    if target.exists():
        shutil.rmtree(target)  # an install that never finished (no .installed)
    _run([python, "-m", "venv", "--without-pip", "--system-site-packages", str(target)], f"creating {target}")
    extra = image_site_packages()
    if extra:
        (_purelib(target) / "_gigatile_image.pth").write_text("".join(f"{p}\n" for p in extra))
    unpack_wheel(wheel, target)
    missing = [p for p in PROGRAMS if not (target / "bin" / p).is_file()]
    if missing:
        raise BootstrapError(f"{wheel.name} installed no {', '.join(missing)} into {target}/bin")
    probe = _run([str(target / "bin" / "python"), "-c", "import tiler, boxlink; print(tiler.__file__)"],
                 f"importing the release in {target}", cwd=target)  # cwd: not the caller's checkout
    if not probe.stdout.strip().startswith(str(target)):
        raise BootstrapError(f"release in {target} imports tiler from {probe.stdout.strip()}, not its own")


def unpack_wheel(wheel: Path, venv: Path) -> None:
    """Install ``wheel`` (no dependencies) into the venv ``venv`` with pypa's ``installer``: its files checked
    against the wheel's RECORD, its console scripts pointed at the venv's python, its modules byte-compiled.
    (pip did the same in ~1.5 s more: its own start-up, twice with ``--python``.)"""
    scheme = sysconfig.get_paths(scheme="venv", vars={"base": str(venv), "platbase": str(venv)})
    destination = SchemeDictionaryDestination(
        {**{key: scheme[key] for key in ("purelib", "platlib", "scripts", "data")}, "headers": scheme["include"]},
        interpreter=str(venv / "bin" / "python"), script_kind="posix", bytecode_optimization_levels=(0,))
    try:
        with WheelFile.open(wheel) as source:
            source.validate_record()
            install(source, destination, additional_metadata={"INSTALLER": b"node-bootstrap\n"})
    except (InstallerError, ValueError, OSError) as exc:
        raise BootstrapError(f"installing {wheel.name} into {venv} failed: {exc}") from exc


def _purelib(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise BootstrapError(f"{venv} has no lib/python*/site-packages")
    return found[0]


def switch_current(layout: NodeLayout, version: str) -> str | None:
    """Point ``current`` at ``version`` (and ``previous`` at what it was); returns the previous version."""
    old = layout.current_version()
    if old == version:
        return old
    point_link(layout.current, f"releases/{version}")
    if old is not None:
        point_link(layout.previous, f"releases/{old}")
    log.info("switched release current=%s previous=%s", version, old)
    return old


def prune_releases(layout: NodeLayout, keep: int = KEEP_RELEASES) -> None:
    """Delete old releases beyond the newest ``keep``, never ``current`` nor ``previous``."""
    pinned = {layout.current_version()}
    with contextlib.suppress(OSError):
        pinned.add(Path(layout.previous.readlink()).name)
    folders = sorted((p for p in layout.releases.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for folder in folders[:-keep] if len(folders) > keep else []:
        if folder.name not in pinned:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("pruned release version=%s", folder.name)


def update_release(client, bucket: str, channel: str, layout: NodeLayout) -> UpdateResult:
    """Install the channel's release (unless it is here already) and make it current.

    A bundle that is not exactly the released size and sha256 is refused before anything is
    installed; ``current`` then stays where it was. Raises BootstrapError with what went wrong.
    """
    started = time.monotonic()
    pointer = read_pointer(client, bucket, channel)
    target = layout.release_dir(pointer.version)
    record = installed_record(target)
    if record is not None and record.get("sha256") != pointer.sha256:
        raise BootstrapError(f"release {pointer.version} is installed here with sha256 {record.get('sha256')}, "
                             f"but s3://{bucket}/{pointer_key(channel)} now says {pointer.sha256}: a version "
                             "name must never be reused; release again under a new version")
    downloaded = record is None
    kernels = str((record or {}).get("kernels", "none"))
    if downloaded:
        wheel = layout.downloads / pointer.version / pointer.wheel_name
        try:
            download_verified(client, bucket, pointer.key, wheel, pointer.sha256, pointer.size)
            layout.releases.mkdir(parents=True, exist_ok=True)
            install_wheel(wheel, target)
            kernels = add_kernels(client, bucket, pointer.version, layout, target)
            write_atomic(target / INSTALLED, json.dumps({**pointer.to_json(), "installed": time.time(),
                                                         "kernels": kernels}).encode())
        except BaseException:
            if installed_record(target) is None:
                shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(wheel.parent, ignore_errors=True)
        log.info("installed release version=%s path=%s", pointer.version, target)
    previous = switch_current(layout, pointer.version)
    prune_releases(layout)
    return UpdateResult(pointer.version, previous, downloaded, time.monotonic() - started, kernels)


def add_kernels(client, bucket: str, version: str, layout: NodeLayout, target: Path) -> str:
    """Give a fresh install compiled kernels: the release's for this CPU, else the running release's.
    Never fatal: without them the kernels compile (warm-up) as they would anyway."""
    try:
        if install_kernels(client, bucket, version, target, layout.downloads / version):
            (target / WARMED).write_text(f"{time.time()}\n")
            return "release"
    except (BootstrapError, OSError, tarfile.TarError) as exc:
        log.warning("release kernels not used version=%s error=%r", version, str(exc))
    running = layout.current.resolve() if layout.current_version() else None
    if running is not None and running != target and copy_kernels(running, target):
        return "previous"
    return "none"
