"""A tall IIIF answer drawn in two halves at once, or from stored tiles decoded on two threads, is the answer
drawn in one piece, pixel for pixel."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gigaformat.layout import DatasetDir
from tiler.dataset import LoadedDataset
from tiler.iiif_parse import parse_iiif_path
from tiler.iiif_plan import SPLIT_ROWS, plan_request, render_plan


def test_halves_drawn_apart_are_the_whole(awkward_root, awkward_pyramid_root):
    rng = random.Random(11)
    tiled = 0
    for root in (awkward_root, awkward_pyramid_root):
        ds = LoadedDataset.open(DatasetDir(root, "awkward"))
        g = ds.geometry
        paths = ["awkward/full/max/0/default.jpg", "awkward/full/1531,/0/default.jpg",
                 "awkward/full/777,513/0/default.jpg", "awkward/0,0,1024,1002/1024,1002/0/default.jpg"]
        for _ in range(12):  # on a level's grid and off it, regions and sizes at random
            w, h = rng.randint(2 * SPLIT_ROWS, g.width), rng.randint(2 * SPLIT_ROWS, g.height)
            x, y = rng.randint(0, g.width - w), rng.randint(0, g.height - h)
            scale = rng.choice([1, 1, 0.7, 0.55])
            paths.append(f"awkward/{x},{y},{w},{h}/{max(1, int(w * scale))},/0/default.jpg")
        split = 0
        with ThreadPoolExecutor(1) as helper:
            for path in paths:
                plan = plan_request(g, parse_iiif_path(path))
                whole = render_plan(plan, g, ds.render_level_window)
                halves = render_plan(plan, g, ds.render_level_window, helper)
                assert halves.shape == whole.shape and np.array_equal(halves, whole), path
                split += plan.out_height >= 2 * SPLIT_ROWS
                if ds.decodes_tiles(plan.z):
                    by_tile = render_plan(plan, g, ds.render_level_window, helper, by_tile=True)
                    assert np.array_equal(by_tile, whole), path
                    tiled += 1
        assert split >= 10  # most were drawn in halves
    assert tiled >= 10  # the pyramid layout's levels are pasted from tiles
