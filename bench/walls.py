"""The bench datasets: synthetic walls published into node roots under ``bench/work/``, their flat forms
(one uncompressed VIPS image for ``vips dzsave``; a pyramidal tiled JPEG TIFF for iipsrv), and random tile
paths over them. Everything here is cached and reused while its stamp matches."""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyvips

from bench.machine import VENV_BIN
from bench.processes import Children
from bench.progress import console, progress_bar
from gigaformat.digests import file_sha256
from gigaformat.errors import FormatError
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from gigaformat.manifest import manifest_key
from gigaformat.state import STATE_FORMAT
from localcloud.seaweedfs import SeaweedS3
from tiler.coarse_raster import CACHE_FOLDER
from tiler.dataset import LoadedDataset
from tiler.local_publish import publish_local
from tiler.upload import Upload, put_bytes, upload_files

TILER = VENV_BIN / "tiler"
DATASET = "covers"


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc) + "\n")


def wall_folder(work: Path, gigapixels: float, seed: int = 1, all_distinct: bool = False) -> Path:
    return work / (f"wall-{gigapixels:g}gpx-seed{seed}" + ("-distinct" if all_distinct else ""))


def wall_name(gigapixels: float, all_distinct: bool = False) -> str:
    """How tables and bars name a wall: ``46-Gpx`` (the generator's 256 covers, repeated) or
    ``2-Gpx distinct`` (every item a cover of its own)."""
    return f"{gigapixels:g}-Gpx" + (" distinct" if all_distinct else "")


def wall_stamp(gigapixels: float, seed: int = 1, unique: int | None = None, all_distinct: bool = False) -> dict:
    """What a cached wall was made with: the generate arguments and the state format it was published in
    (a wall published by an older tiler is stale even where its generate arguments match)."""
    return {"gigapixels": gigapixels, "unique": unique, "seed": seed, "all_distinct": all_distinct,
            "format": STATE_FORMAT}


def published_format_is_current(root: Path, dataset: str = DATASET) -> bool:
    """The node root's current generation loads with this gigaformat (False for an older format)."""
    try:
        DatasetDir(root, dataset).load_current_state()
    except (FormatError, OSError):
        return False
    return True


def wall_is_ready(work: Path, gigapixels: float, seed: int = 1, unique: int | None = None,
                  all_distinct: bool = False) -> bool:
    wall = wall_folder(work, gigapixels, seed, all_distinct)
    return (DatasetDir(wall / "node", DATASET).down_generation() is not None
            and read_json(wall / "stamp.json") == wall_stamp(gigapixels, seed, unique, all_distinct)
            and published_format_is_current(wall / "node"))


def prepare_wall(work: Path, gigapixels: float, children: Children, seed: int = 1, unique: int | None = None,
                 rebuild: bool = False, all_distinct: bool = False) -> Path:
    """A node root (``<work>/wall-<G>gpx-seed<S>[-distinct]/node``) with the wall published as dataset
    ``covers``; reused while ``synch.down`` is there, ``stamp.json`` records the same generate arguments and
    state format, and the published generation loads (a stale wall in an older format is built again)."""
    wall = wall_folder(work, gigapixels, seed, all_distinct)
    folder = DatasetDir(wall / "node", DATASET)
    if not rebuild and wall_is_ready(work, gigapixels, seed, unique, all_distinct):
        return folder.root
    shutil.rmtree(wall, ignore_errors=True)
    wall.mkdir(parents=True)
    args = [TILER, "generate", "--out", wall / "source", "--gigapixels", gigapixels, "--seed", seed]
    args += (["--unique", unique] if unique else []) + (["--all-distinct"] if all_distinct else [])
    console.log(f"generating the {wall_name(gigapixels, all_distinct)} wall in {wall}")
    children.run(args, "generate.log", 3600)
    with console.status(f"publishing the {wall_name(gigapixels, all_distinct)} wall into {folder.path}"):
        publish_local(wall / "source", folder)
    write_json(wall / "stamp.json", wall_stamp(gigapixels, seed, unique, all_distinct))
    return folder.root


@dataclass(frozen=True)
class WallSpec:
    """A bench wall: its size and whether every item has a cover of its own (``tiler generate
    --all-distinct``) or the generator's default of 256 covers repeated. Written ``46`` or ``2d``."""

    gigapixels: float
    all_distinct: bool = False

    @classmethod
    def parse(cls, text: str) -> WallSpec:
        text = text.strip()
        distinct = text.endswith("d")
        return cls(float(text[:-1] if distinct else text), distinct)

    def __str__(self) -> str:
        return f"{self.gigapixels:g}" + ("d" if self.all_distinct else "")

    @property
    def name(self) -> str:
        return wall_name(self.gigapixels, self.all_distinct)

    def folder(self, work: Path, seed: int = 1) -> Path:
        return wall_folder(work, self.gigapixels, seed, self.all_distinct)

    def is_ready(self, work: Path, seed: int = 1) -> bool:
        return wall_is_ready(work, self.gigapixels, seed, all_distinct=self.all_distinct)

    def prepare(self, work: Path, children: Children, seed: int = 1, rebuild: bool = False) -> Path:
        """The node root of the wall (built, or reused while valid)."""
        return prepare_wall(work, self.gigapixels, children, seed, rebuild=rebuild, all_distinct=self.all_distinct)


# --- a wall as published in S3, kept to be uploaded again ----------------------------------------------------

def published_dataset(spec: WallSpec) -> str:
    """The dataset name a wall's published copy carries (``wall-2d``, ``wall-0-2d``): one per wall, so that
    several walls share a bucket."""
    return "wall-" + str(spec).replace(".", "-")


def published_copy(work: Path, spec: WallSpec, children: Children, seed: int = 1) -> Path:
    """``<wall>/published/``: every object ``tiler publish`` put under ``data/<dataset>/`` for the wall (a
    snapshot into an empty bucket of a SeaweedFS of its own, then downloaded), so that a bench whose subject
    is not publishing can put the same wall into its S3 in seconds (``upload_published``); reused while its
    stamp matches the wall's."""
    wall, dataset = spec.folder(work, seed), published_dataset(spec)
    spec.prepare(work, children, seed)
    target, stamp = wall / "published", {"wall": read_json(wall / "stamp.json"), "dataset": dataset}
    if target.is_dir() and read_json(wall / "published.json") == stamp:
        return target
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="published-", dir=work) as tmp, SeaweedS3(Path(tmp)) as s3:
        s3.create_bucket("copy")
        with console.status(f"publishing the {spec.name} wall once, to keep what it puts in S3"):
            children.run([TILER, "publish", wall / "source", "--bucket", "copy", "--dataset", dataset],
                         f"publish-copy-{spec}.log", 3600, env={**os.environ, **s3.env()})
        client, prefix = s3.client(), f"data/{dataset}/"
        partial = target.with_name("published.partial")
        shutil.rmtree(partial, ignore_errors=True)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="copy", Prefix=prefix):
            for item in page.get("Contents", []):
                path = partial / item["Key"][len(prefix):]
                path.parent.mkdir(parents=True, exist_ok=True)
                client.download_file("copy", item["Key"], str(path))
        partial.rename(target)
    write_json(wall / "published.json", stamp)
    return target


def upload_published(copy: Path, client, bucket: str, dataset: str) -> int:
    """Put a published copy under ``data/<dataset>/`` of ``bucket`` as ``tiler publish`` did (sha256 in each
    object's metadata), the manifest last; returns the bytes."""
    prefix = f"data/{dataset}/"
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    uploads = [Upload(p, prefix + p.relative_to(copy).as_posix(), p.stat().st_size, file_sha256(p)) for p in files]
    manifest = [u for u in uploads if u.key == manifest_key(dataset)]
    if len(manifest) != 1:
        raise RuntimeError(f"{copy} holds no manifest of {dataset}")
    upload_files(client, bucket, [u for u in uploads if u not in manifest], lambda sent: None)
    put_bytes(client, bucket, manifest[0].key, manifest[0].path.read_bytes())
    return sum(u.size for u in uploads)


def wall_geometry(root: Path, dataset: str = DATASET) -> Geometry:
    canvas = DatasetDir(root, dataset).load_current_state().canvas
    return Geometry(canvas.width, canvas.height)


def dataset_bytes(folder: DatasetDir) -> int:
    """The bytes of a dataset's folder on the node as replicated (the derived ``cache/`` left out)."""
    skip = folder.path / CACHE_FOLDER
    return sum(p.stat().st_size for p in folder.path.rglob("*") if p.is_file() and not p.is_relative_to(skip))


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
