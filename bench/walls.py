"""The bench datasets: synthetic walls published into node roots under ``bench/work/``, their flat forms
(one uncompressed VIPS image for ``vips dzsave``; a pyramidal tiled JPEG TIFF for iipsrv), and random tile
paths over them. Everything here is cached and reused while its stamp matches."""

from __future__ import annotations

import bisect
import itertools
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyvips

from bench.machine import VENV_BIN
from bench.processes import Children
from bench.progress import console, progress_bar
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.dataset import LoadedDataset
from tiler.local_publish import publish_local

TILER = VENV_BIN / "tiler"
DATASET = "covers"


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc) + "\n")


def wall_folder(work: Path, gigapixels: float, seed: int = 1) -> Path:
    return work / f"wall-{gigapixels:g}gpx-seed{seed}"


def wall_is_ready(work: Path, gigapixels: float, seed: int = 1, unique: int | None = None) -> bool:
    wall = wall_folder(work, gigapixels, seed)
    stamp = {"gigapixels": gigapixels, "unique": unique, "seed": seed}
    return DatasetDir(wall / "node", DATASET).down_generation() is not None and read_json(wall / "stamp.json") == stamp


def prepare_wall(work: Path, gigapixels: float, children: Children, seed: int = 1, unique: int | None = None,
                 rebuild: bool = False) -> Path:
    """A node root (``<work>/wall-<G>gpx-seed<S>/node``) with the wall published as dataset ``covers``;
    reused while ``synch.down`` is there and ``stamp.json`` records the same generate arguments."""
    wall = wall_folder(work, gigapixels, seed)
    folder = DatasetDir(wall / "node", DATASET)
    if not rebuild and wall_is_ready(work, gigapixels, seed, unique):
        return folder.root
    shutil.rmtree(wall, ignore_errors=True)
    wall.mkdir(parents=True)
    args = [TILER, "generate", "--out", wall / "source", "--gigapixels", gigapixels, "--seed", seed]
    console.log(f"generating the {gigapixels:g}-Gpx wall in {wall}")
    children.run(args + (["--unique", unique] if unique else []), "generate.log", 900)
    with console.status(f"publishing the {gigapixels:g}-Gpx wall into {folder.path}"):
        publish_local(wall / "source", folder)
    write_json(wall / "stamp.json", {"gigapixels": gigapixels, "unique": unique, "seed": seed})
    return folder.root


def wall_geometry(root: Path, dataset: str = DATASET) -> Geometry:
    canvas = DatasetDir(root, dataset).load_current_state().canvas
    return Geometry(canvas.width, canvas.height)


def describe_wall(ds: LoadedDataset) -> dict:
    g = ds.geometry
    return {"width": g.width, "height": g.height, "gigapixels": g.width * g.height / 1e9, "items": ds.items,
            "top_level": g.top, "overview_level": ds.overview_level, "generation": ds.generation}


# --- flat forms of a wall -------------------------------------------------------------------------------------

def flatten_wall(ds: LoadedDataset, wall: Path, strip: int = 512) -> Path:
    """The top level as one uncompressed VIPS image (``flat.v``, not timed); reused while it matches."""
    g, target, stamp = ds.geometry, wall / "flat.v", {"generation": ds.generation}
    if target.exists() and read_json(wall / "flat.json") == stamp:
        return target
    raw = wall / "flat.raw"
    with raw.open("wb") as out, progress_bar() as bar:
        task = bar.add_task("flatten", total=-(-g.height // strip))
        for y0 in range(0, g.height, strip):
            out.write(np.ascontiguousarray(ds.render_level_window(g.top, 0, y0, g.width, min(strip, g.height - y0))))
            bar.advance(task)
    image = pyvips.Image.rawload(str(raw), g.width, g.height, 3).copy(interpretation="srgb")
    for name in image.get_fields():
        if name.startswith(("exif", "xmp", "icc", "iptc")):
            image.remove(name)
    with console.status("writing flat.v"):
        image.write_to_file(str(target))
    raw.unlink()
    write_json(wall / "flat.json", stamp)
    return target


def pyramid_tiff(flat: Path, children: Children, quality: int = 85) -> Path:
    """``flat.tif`` beside ``flat``: a pyramidal, 256-px-tiled, JPEG-compressed TIFF (what iipsrv serves),
    made by ``vips tiffsave`` (or pyvips when the CLI is absent); reused while it is newer than ``flat``."""
    target = flat.with_suffix(".tif")
    stamp = {"source_mtime_ns": flat.stat().st_mtime_ns, "quality": quality}
    if target.exists() and read_json(flat.with_name("flat-tif.json")) == stamp:
        return target
    partial = flat.with_name("flat.partial.tif")
    with console.status("writing flat.tif (pyramidal tiled JPEG TIFF for iipsrv)"):
        if shutil.which("vips"):
            children.run(["vips", "tiffsave", flat, partial, "--tile", "--pyramid", "--compression", "jpeg",
                          "--Q", quality, "--tile-width", 256, "--tile-height", 256], "tiffsave.log", 900)
        else:
            pyvips.Image.new_from_file(str(flat)).tiffsave(str(partial), tile=True, pyramid=True, compression="jpeg",
                                                          Q=quality, tile_width=256, tile_height=256)
    partial.rename(target)
    write_json(flat.with_name("flat-tif.json"), stamp)
    return target


# --- tile paths -----------------------------------------------------------------------------------------------

def random_tile_paths(g: Geometry, count: int, seed: int, dataset: str = DATASET) -> list[str]:
    """Tile URLs over all levels: a level drawn uniformly, then a tile of it uniformly (so coarse
    levels repeat, as they do for viewers); the same seed gives the same paths."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        z = rng.randrange(g.top + 1)
        cols, rows = g.tile_counts(z)
        paths.append(f"/tiles/{dataset}/{z}/{rng.randrange(cols)}/{rng.randrange(rows)}.jpg")
    return paths


def distinct_tile_paths(g: Geometry, count: int, seed: int, dataset: str = DATASET) -> list[str]:
    """``count`` different tiles of the whole pyramid, each tile equally likely (so mostly the deepest
    levels); cycled only if the pyramid has fewer tiles."""
    counts = [(z, *g.tile_counts(z)) for z in range(g.top + 1)]
    starts = list(itertools.accumulate((cols * rows for _, cols, rows in counts), initial=0))
    paths = []
    for i in random.Random(seed).sample(range(starts[-1]), min(count, starts[-1])):
        k = bisect.bisect_right(starts, i) - 1
        z, cols, _ = counts[k]
        paths.append(f"/tiles/{dataset}/{z}/{(i - starts[k]) % cols}/{(i - starts[k]) // cols}.jpg")
    return (paths * -(-count // len(paths)))[:count]
