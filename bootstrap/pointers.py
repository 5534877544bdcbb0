"""The release contracts in S3 (docs/architecture.md), one definition for the releaser and the nodes.

- ``releases/<channel>.json`` (``releases/current.json`` for the default channel), written last:
  ``{"version", "key", "sha256", "size"}`` of the code bundle (a wheel of this project).
- ``releases/<version>/<wheel>``: the bundle itself.
- ``bootstrap/current.json``: ``{"digest", "key", "sha256", "size"}`` of the fresh bootstrap, a zipapp
  ``bootstrap/<digest[:16]>/node-bootstrap.pyz``; ``digest`` is the sha256 over its sources (selfupdate).
- ``releases/history.json``: every release per channel, oldest first, and the rollbacks done.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from bootstrap.errors import BootstrapError

BOOTSTRAP_POINTER_KEY = "bootstrap/current.json"
BOOTSTRAP_LATEST_KEY = "bootstrap/node-bootstrap.pyz"  # the newest, under a stable name (for rc.local)
HISTORY_KEY = "releases/history.json"
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def pointer_key(channel: str = "current") -> str:
    return f"releases/{channel}.json"


def bootstrap_key(digest: str) -> str:
    return f"bootstrap/{digest[:16]}/node-bootstrap.pyz"


def _check(doc: Any, where: str, prefix: str, text_fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BootstrapError(f"{where}: expected a JSON object")
    try:
        values = {name: str(doc[name]) for name in text_fields}
        size = doc["size"]
    except KeyError as exc:
        raise BootstrapError(f"{where}: {exc.args[0]} is missing") from None
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise BootstrapError(f"{where}: size {size!r} is not a positive whole number of bytes")
    if not _SHA256.match(values["sha256"]):
        raise BootstrapError(f"{where}: sha256 {values['sha256']!r} is not 64 lowercase hex digits")
    if not values["key"].startswith(prefix) or ".." in values["key"]:
        raise BootstrapError(f"{where}: key {values['key']!r} is not under {prefix}")
    return {**values, "size": size}


@dataclass(frozen=True)
class ReleasePointer:
    """What ``releases/<channel>.json`` says: the bundle every node on that channel installs."""

    version: str
    key: str
    sha256: str
    size: int

    @classmethod
    def from_json(cls, doc: Any, where: str = "release pointer") -> ReleasePointer:
        values = _check(doc, where, "releases/", ("version", "key", "sha256"))
        if not _VERSION.match(values["version"]):
            raise BootstrapError(f"{where}: version {values['version']!r} is not a safe name "
                                 "(1-128 of 0-9 A-Z a-z . _ + -)")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def wheel_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class BootstrapPointer:
    """What ``bootstrap/current.json`` says: the fresh bootstrap and the digest of its sources."""

    digest: str
    key: str
    sha256: str
    size: int

    @classmethod
    def from_json(cls, doc: Any, where: str = BOOTSTRAP_POINTER_KEY) -> BootstrapPointer:
        values = _check(doc, where, "bootstrap/", ("digest", "key", "sha256"))
        if not _SHA256.match(values["digest"]):
            raise BootstrapError(f"{where}: digest {values['digest']!r} is not 64 lowercase hex digits")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """``releases/history.json``: per channel, every release (oldest first); and the rollbacks done."""

    channels: dict[str, list[dict[str, Any]]]
    rollbacks: list[dict[str, Any]]

    @classmethod
    def from_json(cls, doc: Any | None) -> History:
        if doc is None:
            return cls({}, [])
        if not isinstance(doc, dict) or not isinstance(doc.get("channels", {}), dict):
            raise BootstrapError(f"{HISTORY_KEY} is malformed: expected {{\"channels\": {{...}}}}")
        return cls({str(k): list(v) for k, v in doc.get("channels", {}).items()}, list(doc.get("rollbacks", [])))

    def to_json(self) -> dict[str, Any]:
        return {"channels": self.channels, "rollbacks": self.rollbacks}

    def add(self, channel: str, entry: dict[str, Any]) -> None:
        self.channels.setdefault(channel, []).append(entry)

    def before(self, channel: str, version: str) -> dict[str, Any]:
        """The release published on ``channel`` just before ``version``; BootstrapError if none."""
        entries = self.channels.get(channel, [])
        index = next((i for i in range(len(entries) - 1, -1, -1) if entries[i].get("version") == version), None)
        if index is None:
            raise BootstrapError(f"release {version} is not in {HISTORY_KEY} for channel {channel!r}; "
                                 "cannot tell what came before it")
        if index == 0:
            raise BootstrapError(f"release {version} is the first on channel {channel!r}: nothing to roll back to")
        return entries[index - 1]


def encode(doc: Any) -> bytes:
    return json.dumps(doc, indent=1).encode() + b"\n"
