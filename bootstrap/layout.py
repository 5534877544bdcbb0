"""Where node-bootstrap keeps things under a node's root (DESIGN.md "A node's disk").

```
<root>/app/releases/<version>/   one installed release (a venv with this project's wheel), ".installed" last
<root>/app/current -> releases/<version>     switched atomically (rename of a fresh symlink)
<root>/app/previous -> releases/<version>    the release before, kept for rollback
<root>/app/downloads/            bundles being downloaded and verified (never installed from unless verified)
<root>/app/bootstrap/            fresh bootstraps fetched from S3 (<digest>.pyz)
<root>/data/log/                 rolling logs: bootstrap.log, <child>.console.log (shipped by boxlink)
<root>/run/status.json           the supervisor's state, rewritten on every change (node-bootstrap status)
<root>/local/                    only on local nodes: user-data, the launch record, the IMDS emulator's log
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeLayout:
    root: Path

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def releases(self) -> Path:
        return self.app / "releases"

    @property
    def current(self) -> Path:
        return self.app / "current"

    @property
    def previous(self) -> Path:
        return self.app / "previous"

    @property
    def downloads(self) -> Path:
        return self.app / "downloads"

    @property
    def fresh_bootstraps(self) -> Path:
        return self.app / "bootstrap"

    @property
    def log_dir(self) -> Path:
        return self.root / "data" / "log"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def status_path(self) -> Path:
        return self.run_dir / "status.json"

    @property
    def local_dir(self) -> Path:
        return self.root / "local"

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def current_bin(self, program: str) -> Path:
        """A program of the current release, through the ``current`` link (resolved at each start)."""
        return self.current / "bin" / program

    def current_version(self) -> str | None:
        """The version ``current`` points at, or None before the first install."""
        try:
            return Path(self.current.readlink()).name
        except OSError:
            return None
