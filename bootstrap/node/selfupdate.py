"""The fresh bootstrap: node-bootstrap as one zipapp in S3, and re-executing it when it differs.

A bootstrap is known by its *digest*: the sha256 over the names and contents of the ``.py`` files of the
packages it is made of (``bootstrap`` and ``gigaformat``: standard library and boto3 only, so the
zipapp runs on any machine image with those; it never imports the renderer), computed the same way from a
source folder (at release) and from the running code (on the node, whether it runs from a folder or from a
zipapp). A node whose digest differs from
``bootstrap/current.json`` downloads the zipapp, checks its size and sha256, and ``exec``s it with the same
arguments. The re-executed process carries ``GIGATILE_BOOTSTRAP_REEXEC=<digest>`` and never re-executes
again, so two bootstraps that disagree about their digest cannot loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from bootstrap.errors import BootstrapError
from bootstrap.pointers import BOOTSTRAP_POINTER_KEY, BootstrapPointer
from bootstrap.s3io import download_verified, file_sha256, read_json
from gigaformat.layout import NodeLayout

log = logging.getLogger(__name__)

REEXEC_VARIABLE = "GIGATILE_BOOTSTRAP_REEXEC"
PACKAGES = ("bootstrap", "gigaformat")  # what a fresh bootstrap is made of
MAIN = "import sys\n\nfrom bootstrap.cli import main\n\nsys.exit(main())\n"


def digest_of(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, content) pairs, in name order."""
    outer = hashlib.sha256()
    for name, content in sorted(files):
        outer.update(f"{name}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    return outer.hexdigest()


def package_sources(source: Path) -> list[tuple[str, bytes]]:
    """The ``.py`` files of the bootstrap's packages under the project folder ``source`` (sub-folders
    included), named ``<package>/<path>``."""
    found = []
    for package in PACKAGES:
        folder = source / package
        if not (folder / "__init__.py").is_file():
            raise BootstrapError(f"{source} has no {package} package (no {package}/__init__.py): point at the "
                                 "project folder")
        found += [(f"{package}/{p.relative_to(folder).as_posix()}", p.read_bytes())
                  for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts]
    return found


def running_sources() -> list[tuple[str, bytes]]:
    """The running bootstrap's ``.py`` files, from folders or from inside a zipapp."""
    found: list[tuple[str, bytes]] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".py"):
                found.append((prefix + child.name, child.read_bytes()))

    for package in PACKAGES:
        walk(resources.files(package), f"{package}/")
    return found


def running_digest() -> str:
    return digest_of(running_sources())


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
