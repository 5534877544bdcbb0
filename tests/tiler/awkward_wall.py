"""A small wall of awkward items, and an independent reference of its pyramid written with Pillow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

BACKGROUND = (139, 90, 43)


def _pattern(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "stripes":
        a = np.zeros((h, w, 3), np.uint8)
        a[:, ::2] = 255
        a[::3, :, 1] = 200
        return a
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1).astype(np.uint8)


def make_awkward_wall(folder: Path, width: int = 1531, height: int = 1002, seed: int = 3) -> list[tuple]:
    """Write the source folder; return the item rows (id, x, y, w, h, image)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    specs = [(-50, -30, 300, 200, "grad"), (10, 10, 1, 1, "noise"), (700, 400, 900, 700, "grad"),
             (333, 217, 97, 301, "noise"), (1400, 900, 300, 300, "stripes"), (100, 500, 513, 257, "grad"),
             (101, 501, 3, 2, "noise"), (1200, 5, 255, 257, "stripes"), (600, 600, 400, 300, "noise"),
             (0, 0, 1, 1, "grad"), (width - 1, height - 1, 1, 1, "noise")]
    for i in range(40):
        specs.append((int(rng.integers(-100, width)), int(rng.integers(-100, height)), int(rng.integers(1, 200)),
                      int(rng.integers(1, 200)), ("grad", "noise", "stripes")[i % 3]))
    rows = []
    for i, (x, y, w, h, kind) in enumerate(specs):
        name = f"img/{i:03d}-{kind}.png"
        Image.fromarray(_pattern(kind, w, h, rng)).save(folder / name)
        rows.append((f"item{i}", x, y, w, h, name))
    (folder / "canvas.json").write_text(json.dumps({"width": width, "height": height,
                                                    "background": "#{:02x}{:02x}{:02x}".format(*BACKGROUND)}))
    with (folder / "items.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "x", "y", "width", "height", "image"])
        writer.writerows(rows)
    return rows


def reference_levels(folder: Path) -> dict[int, np.ndarray]:
    """Compose at 1:1 with Pillow (later rows over earlier ones), then halve with Image.reduce."""
    canvas_doc = json.loads((folder / "canvas.json").read_text())
    width, height = canvas_doc["width"], canvas_doc["height"]
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    with (folder / "items.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            image = Image.open(folder / row["image"]).convert("RGB")
            size = (int(row["width"]), int(row["height"]))
            if image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            canvas.paste(image, (int(row["x"]), int(row["y"])))
    top = max(0, int(np.ceil(np.log2(max(width, height) / 256))))
    levels = {top: np.asarray(canvas)}
    level = canvas
    for z in range(top - 1, -1, -1):
        level = level.reduce(2)
        levels[z] = np.asarray(level)
    return levels


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
