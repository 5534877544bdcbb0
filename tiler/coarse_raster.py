"""Decoded coarse levels on the node's disk: each stored (or derived) coarse level's pixels as one raw RGB image.

A window that spans many stored tiles (a 1024-px IIIF region at a coarse level covers 5 x 5 of them, each a
millisecond of JPEG decoding) is then a copy out of a memory map instead. The raster holds exactly the pixels
the tiles decode to: it is filled from ``LoadedDataset._overview_tile``, tile by tile, over the level's whole
tile grid, so a window read from it equals the window decoded from the tiles, pixel for pixel.

It is node-local and derived: never published nor replicated, built again if lost. A serving worker builds
it in the background once a generation is fully on disk (never while it is lazy), under a file lock, so one
worker of a node builds while the others keep decoding and pick the file up when it is there. It is written
beside, fsynced and renamed into ``<dataset>/cache/coarse-<generation>.raw``; files of older generations
are removed when a newer one is complete. It holds the levels down to 1:16 (``BELOW_TOP``: about a tenth
of the bytes of a JPEG pyramid), from the coarsest while their raw bytes fit the budget (``tiler serve
--coarse-raster-mb``; 0 turns it off).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.compose import background_window

log = logging.getLogger(__name__)

MAGIC = b"gigatile coarse raster 1\n"
HEADER_BYTES = 4096  # the JSON header, padded; every level starts on a page
CACHE_FOLDER = "cache"


@dataclass(frozen=True)
class RasterLevel:
    z: int
    offset: int  # of its first byte in the file
    width: int   # the level's whole tile grid: tile columns x tile size
    height: int

    @property
    def nbytes(self) -> int:
        return self.width * self.height * 3


BELOW_TOP = 4  # the finest level kept: 1:16, whose raw RGB is 3/256 of a byte per canvas pixel


def plan_levels(geometry: Geometry, coarse_levels: int, budget_bytes: int, below_top: int = BELOW_TOP
                ) -> list[RasterLevel]:
    """The levels kept: 0..``coarse_levels`` and at most ``top - below_top`` (all of them, raw, about 1.6 % of
    the canvas's pixel count in bytes: a tenth of a JPEG q85 pyramid of it), from the coarsest while their raw
    bytes fit ``budget_bytes``."""
    levels, offset = [], HEADER_BYTES
    for z in range(min(coarse_levels, geometry.top - below_top) + 1):
        cols, rows = geometry.tile_counts(z)
        level = RasterLevel(z, offset, cols * geometry.tile_size, rows * geometry.tile_size)
        if offset + level.nbytes - HEADER_BYTES > budget_bytes:
            break
        levels.append(level)
        offset += -(-level.nbytes // HEADER_BYTES) * HEADER_BYTES
    return levels


def raster_size(levels: list[RasterLevel]) -> int:
    """The bytes of a raster file of ``levels`` (as ``plan_levels`` gives them)."""
    return levels[-1].offset + levels[-1].nbytes if levels else HEADER_BYTES


def raster_path(folder: DatasetDir, generation: int) -> Path:
    return folder.path / CACHE_FOLDER / f"coarse-{generation}.raw"


class CoarseRaster:
    """A complete raster file, memory-mapped read-only (its pages are the page cache's, shared by workers)."""

    def __init__(self, path: Path, levels: list[RasterLevel]):
        self.path = path
        self.levels = {level.z: level for level in levels}
        self.nbytes = path.stat().st_size
        self._map = np.memmap(path, dtype=np.uint8, mode="r")
        self._views = {level.z: self._map[level.offset:level.offset + level.nbytes].reshape(level.height,
                                                                                              level.width, 3)
                       for level in levels}

    def has(self, z: int) -> bool:
        return z in self._views

    def window(self, z: int, x0: int, y0: int, width: int, height: int,
               background: tuple[int, int, int]) -> np.ndarray:
        """The (height, width, 3) window of level ``z`` at (x0, y0); background beyond the level's tiles."""
        view = self._views[z]
        ax0, ay0 = max(0, x0), max(0, y0)
        ax1, ay1 = min(view.shape[1], x0 + width), min(view.shape[0], y0 + height)
        if (ax0, ay0, ax1, ay1) == (x0, y0, x0 + width, y0 + height):
            return np.array(view[y0:y0 + height, x0:x0 + width])
        out = background_window(height, width, background)
        if ax0 < ax1 and ay0 < ay1:
            out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = view[ay0:ay1, ax0:ax1]
        return out


def open_raster(path: Path, dataset: str, generation: int, geometry: Geometry) -> CoarseRaster | None:
    """The raster at ``path`` if it is a complete one of this generation, else None (the reason logged)."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_BYTES)
        if not head.startswith(MAGIC):
            raise ValueError("not a coarse raster")
        doc = json.loads(head[len(MAGIC):].rstrip(b" \n\0"))
        levels = [RasterLevel(int(z), int(o), int(w), int(h)) for z, o, w, h in doc["levels"]]
        if doc["dataset"] != dataset or int(doc["generation"]) != generation:
            raise ValueError(f"made for {doc['dataset']}@{doc['generation']}")
        for level in levels:
            cols, rows = geometry.tile_counts(level.z)
            if (level.width, level.height) != (cols * geometry.tile_size, rows * geometry.tile_size):
                raise ValueError(f"level {level.z} is {level.width}x{level.height}, not this canvas's")
        if path.stat().st_size != int(doc["size"]):
            raise ValueError(f"{path.stat().st_size} bytes, not the {doc['size']} its header says")
        return CoarseRaster(path, levels)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("coarse raster ignored path=%s reason=%s", path, exc)
        return None


def build_raster(path: Path, dataset: str, generation: int, levels: list[RasterLevel], tile_size: int,
                 tile_pixels: Callable[[int, int, int], np.ndarray], tile_exists: Callable[[int, int, int], bool],
                 background: tuple[int, int, int]) -> None:
    """Write the raster of ``levels`` to ``path`` (beside it first, fsynced, then renamed)."""
    size = raster_size(levels)
    header = MAGIC + json.dumps({"dataset": dataset, "generation": generation, "size": size,
                                 "levels": [[lv.z, lv.offset, lv.width, lv.height] for lv in levels]}).encode()
    if len(header) > HEADER_BYTES:
        raise ValueError("coarse raster header too long")
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as f:
            f.truncate(size)
            f.write(header.ljust(HEADER_BYTES, b" "))
        image = np.memmap(partial, dtype=np.uint8, mode="r+")
        for level in levels:
            view = image[level.offset:level.offset + level.nbytes].reshape(level.height, level.width, 3)
            for ty in range(level.height // tile_size):
                for tx in range(level.width // tile_size):
                    block = view[ty * tile_size:(ty + 1) * tile_size, tx * tile_size:(tx + 1) * tile_size]
                    block[:] = tile_pixels(level.z, tx, ty) if tile_exists(level.z, tx, ty) else background
        image.flush()
        del image
        with partial.open("rb+") as f:
            os.fsync(f.fileno())
        partial.rename(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def build_dataset_raster(ds, path: Path, levels: list[RasterLevel]) -> CoarseRaster | None:
    """Build the raster of ``levels`` of loaded dataset ``ds`` at ``path`` from its tiles, and open it."""
    build_raster(path, ds.name, ds.generation, levels, ds.geometry.tile_size, ds._overview_tile,
                 ds.geometry.has_tile, ds.background)
    return open_raster(path, ds.name, ds.generation, ds.geometry)


class RasterKeeper:
    """Gives each fully local loaded generation its coarse raster: opens the file if it is there, else builds
    it in a background thread when this process wins the node's lock (``tend`` is called again and again)."""

    def __init__(self, budget_mb: int, below_top: int = BELOW_TOP):
        self.budget = budget_mb << 20
        self.below_top = below_top
        self._building: set[tuple[str, int]] = set()
        self._failed: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def tend(self, folder: DatasetDir, ds) -> None:
        """Attach ``ds``'s raster if it can be had now; start building it if nobody is."""
        key = (ds.name, ds.generation)
        if self.budget <= 0 or ds.lazy or ds.coarse is not None or key in self._failed:
            return
        levels = plan_levels(ds.geometry, ds.overview_level, self.budget, self.below_top)
        if not levels:
            return
        path = raster_path(folder, ds.generation)
        with self._lock:
            if key in self._building:
                return
            raster = open_raster(path, ds.name, ds.generation, ds.geometry)
            if raster is not None:
                ds.coarse = raster
                return
            try:
                lock = _try_lock(path)
            except OSError as exc:  # a read-only or full disk: regions decode their tiles, as before
                self._failed.add(key)
                log.warning("coarse raster not built dataset=%s generation=%d error=%s", ds.name, ds.generation,
                            exc)
                return
            if lock is None:
                return  # another worker builds it: looked for again at the next tend
            self._building.add(key)
        threading.Thread(target=self._build, args=(folder, ds, levels, path, lock), daemon=True,
                         name=f"coarse-raster-{ds.name}").start()

    def _build(self, folder: DatasetDir, ds, levels: list[RasterLevel], path: Path, lock) -> None:
        key = (ds.name, ds.generation)
        with contextlib.suppress(OSError, AttributeError):  # below the renders in priority (Linux: per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        started = time.monotonic()
        try:
            raster = open_raster(path, ds.name, ds.generation, ds.geometry)  # finished while we took the lock
            if raster is None:
                for stale in path.parent.glob(f"{path.name}.*.part"):
                    stale.unlink(missing_ok=True)
                raster = build_dataset_raster(ds, path, levels)
            if raster is None:
                raise OSError(f"{path} did not read back")
            ds.coarse = raster
            log.info("coarse raster built dataset=%s generation=%d levels=%s bytes=%d seconds=%.2f", ds.name,
                     ds.generation, sorted(raster.levels), raster.nbytes, time.monotonic() - started)
            _remove_older(path.parent, ds.generation)
        except Exception as exc:  # a cache: without it regions decode their tiles, as before
            self._failed.add(key)
            log.warning("coarse raster not built dataset=%s generation=%d error=%s", ds.name, ds.generation, exc)
        finally:
            with self._lock:
                self._building.discard(key)
            lock.close()


def _try_lock(path: Path):
    """The open lock file of ``path``'s build, held; None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.with_name(path.name + ".lock"), "wb")  # noqa: SIM115 (held until the build ends)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _remove_older(folder: Path, generation: int) -> None:
    """Remove the files of every generation older than the newest raster there (``generation``'s own too when
    a newer one finished first: that generation is being swapped out, and its open mapping stays valid)."""
    def number(path: Path) -> int | None:
        digits = path.name.split("-", 1)[1].split(".", 1)[0]
        return int(digits) if digits.isdigit() else None

    found = [(path, number(path)) for path in folder.glob("coarse-*")]
    newest = max([generation, *(n for path, n in found if n is not None and path.name == f"coarse-{n}.raw")])
    for path, n in found:
        if n is not None and n < newest:
            path.unlink(missing_ok=True)
