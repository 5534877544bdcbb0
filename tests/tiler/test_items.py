"""The bookstore routes on a real published wall (the Tantivy index built by the real publisher): hit-testing
in drawing order, one item, a rectangle, ranked search with prefixes, words and filters, words of any script
folded as the index folds them; a diff that moves an item and renames it is seen at once; a metadata-only
change is a small diff that touches no pixel."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gigaformat.layout import DatasetDir
from tiler.app import build_app
from tiler.generate import generate_wall
from tiler.local_publish import publish_local
from tiler.settings import ServeSettings

DS = "books"


def read_rows(source: Path) -> list[dict[str, str]]:
    with (source / "items.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(source: Path, rows: list[dict[str, str]]) -> None:
    with (source / "items.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def wall(tmp_path: Path):
    source = tmp_path / "src"
    generate_wall(source, gigapixels=0.01, unique=30, seed=4, all_distinct=True)
    rows = read_rows(source)
    over = dict(rows[1], id="over", x=str(int(rows[1]["x"]) + 10), y=str(int(rows[1]["y"]) + 10),
                title="Zebra Quartz Over", author="Ann Top")
    write_rows(source, [*rows, over])  # drawn last, over rows[1]
    folder = DatasetDir(tmp_path / "node", DS)
    publish_local(source, folder)
    settings = ServeSettings(root=tmp_path / "node", datasets=(DS,), reload_seconds=0.1)
    with TestClient(build_app(settings)) as client:
        deadline = time.monotonic() + 20
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client, source, folder, read_rows(source)


def test_hit_test_respects_drawing_order_and_background(wall):
    client, _, _, rows = wall
    under, over = rows[1], rows[-1]
    inside_both = client.get(f"/tiles/{DS}/items/at", params={"x": int(over["x"]) + 1, "y": int(over["y"]) + 1})
    assert inside_both.status_code == 200 and inside_both.json()["id"] == "over"
    assert inside_both.json()["meta"]["title"] == "Zebra Quartz Over"
    only_under = client.get(f"/tiles/{DS}/items/at", params={"x": int(under["x"]) + 2, "y": int(under["y"]) + 2})
    doc = only_under.json()
    assert doc["id"] == under["id"] and (doc["x"], doc["width"]) == (int(under["x"]), int(under["width"]))
    assert doc["meta"] == {k: under[k] for k in ("title", "author", "category", "url")}
    assert client.get(f"/tiles/{DS}/items/at", params={"x": 1, "y": 1}).status_code == 404  # the wood margin
    assert client.get(f"/tiles/{DS}/items/at", params={"x": 10**7, "y": 1}).status_code == 404
    for bad in ({"x": "a", "y": 1}, {"y": 1}, {"x": "1.5", "y": 2}):
        assert client.get(f"/tiles/{DS}/items/at", params=bad).status_code == 400


def test_one_item_and_the_items_of_a_rectangle(wall):
    client, _, _, rows = wall
    first = client.get(f"/tiles/{DS}/items/{rows[0]['id']}")
    assert first.status_code == 200 and first.json()["meta"]["author"] == rows[0]["author"]
    assert client.get(f"/tiles/{DS}/items/no-such").status_code == 404
    assert client.get(f"/tiles/{DS}/items/bad%20id").status_code in (400, 404)
    box = client.get(f"/tiles/{DS}/items", params={"bbox": "0,0,2000,1200", "limit": 3}).json()
    assert box["total"] > 3 and len(box["items"]) == 3
    assert all(item["x"] < 2000 and item["y"] < 1200 for item in box["items"])
    for bad in ("1,2,3", "0,0,0,5", "0,0,100000,100000", "a,b,c,d"):
        assert client.get(f"/tiles/{DS}/items", params={"bbox": bad}).status_code == 400
    assert client.get(f"/tiles/{DS}/items", params={"bbox": "0,0,10,10", "limit": 0}).status_code == 400


def test_search_ranks_words_prefixes_and_filters(wall):
    client, _, _, rows = wall
    title = rows[5]["title"]
    found = client.get(f"/tiles/{DS}/search", params={"q": title}).json()
    assert found["total"] >= 1 and title in [i["meta"]["title"] for i in found["items"][:3]]
    # the last word is also a word's start (search as you type); the words before it are whole words
    assert client.get(f"/tiles/{DS}/search", params={"q": "zebra quar"}).json()["items"][0]["id"] == "over"
    assert client.get(f"/tiles/{DS}/search", params={"q": "zebr quartz"}).json()["total"] == 0
    assert client.get(f"/tiles/{DS}/search", params={"q": "zebra qu"}).json()["total"] == 0  # under 3 letters
    assert client.get(f"/tiles/{DS}/search", params={"q": "zebra nonexistentword"}).json() == {"total": 0,
                                                                                                "items": []}
    category = rows[0]["category"]
    filtered = client.get(f"/tiles/{DS}/search", params={"category": category, "limit": 1000}).json()
    assert filtered["total"] == sum(r["category"] == category for r in rows)
    assert all(i["meta"]["category"] == category for i in filtered["items"])
    page = client.get(f"/tiles/{DS}/search", params={"category": category, "limit": 2, "offset": 2}).json()
    assert page["items"] == filtered["items"][2:4]
    assert client.get(f"/tiles/{DS}/search", params={"q": "x", "colour": "red"}).status_code == 400
    assert client.get(f"/tiles/{DS}/search").status_code == 400
    assert client.get(f"/tiles/{DS}/search", params={"q": "a" * 300}).status_code == 400


def test_a_diff_that_moves_and_renames_an_item_is_seen_without_a_restart(wall):
    client, source, folder, rows = wall
    target = rows[3]
    old_x, old_y = int(target["x"]), int(target["y"])
    rows[3] = dict(target, x=str(old_x + 40), title="Moved Walrus Almanac")
    write_rows(source, rows)
    assert publish_local(source, folder) == 2
    deadline = time.monotonic() + 10
    while client.get(f"/tiles/{DS}/info.json").json()["generation"] != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    hit = client.get(f"/tiles/{DS}/items/at", params={"x": old_x + 45, "y": old_y + 5}).json()
    assert hit["id"] == target["id"] and hit["x"] == old_x + 40
    assert client.get(f"/tiles/{DS}/search", params={"q": "walrus"}).json()["items"][0]["id"] == target["id"]


def test_a_metadata_only_change_is_a_small_diff_that_touches_no_pixel(wall):
    _, source, folder, rows = wall
    before = folder.load_current_state()
    for row in rows[:5]:
        row["title"] = row["title"] + " (second edition)"
    write_rows(source, rows)
    assert publish_local(source, folder) == 2
    after = folder.load_current_state()
    assert after.cells == before.cells and after.tiles == before.tiles  # no tile version, no stored tile moved
    assert not list(folder.objects.glob("diff-2/*.bin"))  # no pixels written


def test_search_folds_a_query_as_the_index_folds_titles(tmp_path: Path):
    source = tmp_path / "src"
    generate_wall(source, gigapixels=0.01, unique=30, seed=5, all_distinct=True)
    rows = read_rows(source)
    titles = {"nordic": "Søren og Straße", "tokyo": "東京物語", "war": "Война и мир", "eclair": "E\u0301clair Æble"}
    for row, (item_id, title) in zip(rows, titles.items(), strict=False):
        row.update(id=item_id, title=title)
    write_rows(source, rows)
    publish_local(source, DatasetDir(tmp_path / "node", DS))
    settings = ServeSettings(root=tmp_path / "node", datasets=(DS,), reload_seconds=0.1)
    with TestClient(build_app(settings)) as client:
        deadline = time.monotonic() + 20
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        for query, item_id in (("søren STRASSE", "nordic"), ("soren straße", "nordic"), ("東京物語", "tokyo"),
                               ("東京", "tokyo"), ("物語", "tokyo"), ("ВОЙНА мир", "war"), ("éclair aeble", "eclair"),
                               ("E\u0301CLAIR æble", "eclair")):
            found = client.get(f"/tiles/{DS}/search", params={"q": query}).json()
            assert [item["id"] for item in found["items"]][:1] == [item_id], (query, found)
