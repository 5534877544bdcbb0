"""The fresh bootstrap as one file: a zipapp of the bootstrap's packages (``bootstrap.node.selfupdate``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from bootstrap.node.selfupdate import MAIN, digest_of, package_sources

ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sources make the same zipapp bytes


def build_pyz(source: Path, out: Path) -> str:
    """Write a zipapp of the bootstrap's packages in the project folder ``source`` to ``out``; returns its
    digest."""
    sources = package_sources(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw:
        raw.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in [("__main__.py", MAIN.encode()), *sources]:
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, content)
    out.chmod(0o755)
    return digest_of(sources)
