"""The fresh bootstrap: node-bootstrap as one zipapp in S3, and re-executing it when it differs.

A bootstrap is known by its *digest*: the sha256 over the names and contents of the ``bootstrap``
package's ``.py`` files, computed the same way from a source folder (at release) and from the running code
(on the node, whether it runs from a folder or from a zipapp). A node whose digest differs from
``bootstrap/current.json`` downloads the zipapp, checks its size and sha256, and ``exec``s it with the same
arguments. The re-executed process carries ``GIGATILE_BOOTSTRAP_REEXEC=<digest>`` and never re-executes
again, so two bootstraps that disagree about their digest cannot loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import zipfile
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from bootstrap.errors import BootstrapError
from bootstrap.layout import NodeLayout
from bootstrap.release import BOOTSTRAP_POINTER_KEY, BootstrapPointer
from bootstrap.s3io import download_verified, file_sha256, read_json

log = logging.getLogger(__name__)

REEXEC_VARIABLE = "GIGATILE_BOOTSTRAP_REEXEC"
PACKAGE = "bootstrap"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sources make the same zipapp bytes
MAIN = "import sys\n\nfrom bootstrap.cli import main\n\nsys.exit(main())\n"


def digest_of(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, content) pairs, in name order."""
    outer = hashlib.sha256()
    for name, content in sorted(files):
        outer.update(f"{name}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    return outer.hexdigest()


def package_sources(package_dir: Path) -> list[tuple[str, bytes]]:
    """The ``.py`` files of a ``bootstrap`` package folder (sub-folders included), names relative to it."""
    if not (package_dir / "__init__.py").is_file():
        raise BootstrapError(f"{package_dir} is not the bootstrap package (no __init__.py)")
    return [(p.relative_to(package_dir).as_posix(), p.read_bytes()) for p in sorted(package_dir.rglob("*.py"))
            if "__pycache__" not in p.parts]


def running_sources() -> list[tuple[str, bytes]]:
    """The running bootstrap package's ``.py`` files, from a folder or from inside a zipapp."""
    found: list[tuple[str, bytes]] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".py"):
                found.append((prefix + child.name, child.read_bytes()))

    walk(resources.files(PACKAGE), "")
    return found


def running_digest() -> str:
    return digest_of(running_sources())


def build_pyz(package_dir: Path, out: Path) -> str:
    """Write a zipapp of the package at ``package_dir`` to ``out``; returns its digest."""
    sources = package_sources(package_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw:
        raw.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in [("__main__.py", MAIN.encode())] + [(f"{PACKAGE}/{n}", c) for n, c in sources]:
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, content)
    out.chmod(0o755)
    return digest_of(sources)


def fetch_fresh_bootstrap(client, bucket: str, layout: NodeLayout, own_digest: str) -> Path | None:
    """The verified zipapp of a published bootstrap that differs from ours, or None if ours is fresh
    (or none is published). BootstrapError if the published one cannot be had intact."""
    doc = read_json(client, bucket, BOOTSTRAP_POINTER_KEY)
    if doc is None:
        log.info("no fresh bootstrap published key=s3://%s/%s; running our own", bucket, BOOTSTRAP_POINTER_KEY)
        return None
    pointer = BootstrapPointer.from_json(doc, f"s3://{bucket}/{BOOTSTRAP_POINTER_KEY}")
    if pointer.digest == own_digest:
        log.info("bootstrap is fresh digest=%s", own_digest[:16])
        return None
    dest = layout.fresh_bootstraps / f"{pointer.digest}.pyz"
    if dest.is_file() and dest.stat().st_size == pointer.size and file_sha256(dest) == pointer.sha256:
        return dest  # fetched and verified at an earlier boot
    log.info("fetching fresh bootstrap digest=%s running=%s", pointer.digest[:16], own_digest[:16])
    return download_verified(client, bucket, pointer.key, dest, pointer.sha256, pointer.size)


def reexec(pyz: Path, argv: list[str], environ: Mapping[str, str], digest: str) -> None:
    """Replace this process with ``python pyz argv...``; never returns."""
    env = {**environ, REEXEC_VARIABLE: digest}
    log.info("re-executing fresh bootstrap path=%s", pyz)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execve(sys.executable, [sys.executable, str(pyz), *argv], env)
