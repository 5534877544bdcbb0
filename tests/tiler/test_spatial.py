"""The spatial index finds exactly the items overlapping a rect of the canvas, and a rect partly or wholly
beside the canvas (a window at a level's edge) is answered too, never an error."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tiler.spatial import ItemTable, SpatialIndex

CANVAS = (1000, 700)
ITEMS = ItemTable(x=[0, 120, 480, 900, -30, 600], y=[0, 40, 300, 650, 680, -10], w=[100, 300, 64, 200, 50, 10],
                  h=[100, 80, 64, 100, 40, 5], variant=[0, 1, 2, 3, 4, 5])
INDEX = SpatialIndex(ITEMS, *CANVAS, grid=128)


def overlapping(x0: int, y0: int, x1: int, y1: int) -> list[int]:
    """Items with a part on the canvas whose rectangle overlaps the rect, by brute force."""
    if x1 <= x0 or y1 <= y0:
        return []
    t = ITEMS
    on_canvas = [i for i in range(len(t.x)) if min(t.x[i] + t.w[i], CANVAS[0]) > max(t.x[i], 0)
                 and min(t.y[i] + t.h[i], CANVAS[1]) > max(t.y[i], 0)]
    return [i for i in on_canvas if t.x[i] < x1 and t.x[i] + t.w[i] > x0 and t.y[i] < y1 and t.y[i] + t.h[i] > y0]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, CANVAS[0] - 1), st.integers(0, CANVAS[1] - 1), st.integers(0, 1200), st.integers(0, 900))
def test_a_rect_of_the_canvas_finds_exactly_the_items_over_it(x0, y0, width, height):
    x1, y1 = min(x0 + width, CANVAS[0]), min(y0 + height, CANVAS[1])
    found = INDEX.query(x0, y0, x1, y1)
    assert found.dtype == np.int32
    assert found.tolist() == overlapping(x0, y0, x1, y1)


@settings(max_examples=300, deadline=None)
@given(st.integers(-3000, 3000), st.integers(-3000, 3000), st.integers(0, 3000), st.integers(0, 3000))
def test_any_rect_is_answered_with_items_over_it(x0, y0, width, height):
    found = INDEX.query(x0, y0, x0 + width, y0 + height).tolist()
    assert set(found) <= set(overlapping(x0, y0, x0 + width, y0 + height))
    assert found == sorted(set(found))


def test_a_rect_wholly_beside_the_canvas_finds_nothing():
    for rect in ((-500, 0, -1, 100), (0, -400, 100, -10), (1001, 0, 1500, 600), (0, 760, 1000, 900)):
        assert INDEX.query(*rect).tolist() == []
