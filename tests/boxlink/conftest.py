"""Fixtures of the boxlink tests: one small generated wall per session (copied per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.boxlink.walls import copy_wall
from tiler.generate import generate_wall


@pytest.fixture(scope="session")
def wall_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("boxlink-wall") / "wall"
    generate_wall(out, gigapixels=0.05, unique=60, seed=11)
    return out


@pytest.fixture
def wall(wall_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small wall's source folder, free to edit."""
    return copy_wall(wall_template, tmp_path / "wall")
