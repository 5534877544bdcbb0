"""The items index finds a word inside a run of Chinese or Japanese, and an index built before still answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gigaformat import itemsdb
from gigaformat.itemsdb import WORDS_FILE, ItemsIndex, apply_meta, build_items_index, search_words

TITLES = {"tokyo": "東京物語", "ramen": "ラーメン大好き小池さん", "kyoto": "京都の東寺", "plain": "Tokyo Story",
          "mixed": "Vol.2 東京", "sasaki": "佐々木小次郎", "vinci": "レオナルド・ダ・ヴィンチ"}


def found(index: ItemsIndex, query: str) -> list[str]:
    words = search_words(query, index.cjk_pairs)
    return sorted(index.search(words, (), 10, 0)[1]) if words else []


@pytest.fixture
def index(tmp_path: Path) -> ItemsIndex:
    build_items_index(tmp_path / "index", ((i, {"title": t}) for i, t in TITLES.items()), ["title"])
    return ItemsIndex(tmp_path / "index")


@pytest.mark.parametrize(("query", "ids"), [
    ("東京", ["mixed", "tokyo"]), ("物語", ["tokyo"]), ("東京物語", ["tokyo"]), ("京物", ["tokyo"]),
    ("東", ["kyoto", "mixed", "tokyo"]), ("ラーメン", ["ramen"]), ("大好き", ["ramen"]), ("京東", []),
    ("東京 story", []), ("tokyo", ["plain"]), ("vol 東京", ["mixed"]), ("佐々木", ["sasaki"]), ("々木", ["sasaki"]),
    ("ダ・ヴィンチ", ["vinci"]), ("レオナルド", ["vinci"]), ("東京都", []),
])
def test_a_word_inside_a_run_of_chinese_or_japanese_is_found(index, query, ids):
    assert index.cjk_pairs
    assert found(index, query) == ids


def test_a_query_is_cut_into_pairs_that_cover_each_run():
    assert search_words("東京物語 Søren") == ["東京", "物語", "soren"]
    assert search_words("東京都") == ["東京", "京都"] and search_words("東") == ["東"]
    assert search_words("東京東京東京") == ["東京"]  # each word looked up once
    assert search_words("ダ・ヴィンチ") == ["ダ", "ヴィ", "ンチ"]  # the middle dot is no part of a word
    assert search_words("東京物語", cjk_pairs=False) == ["東京物語"]


def test_the_word_limit_counts_words_as_typed_not_their_pairs():
    words = ["吾輩", "は猫", "であ", "ある", "夏目", "漱石", "story"]
    assert search_words("吾輩は猫である 夏目漱石 story", limit=3) == words
    assert search_words("one two three", limit=2) == ["one", "two"]
    assert search_words("x" * 70 + " two three", limit=2) == ["two", "three"]  # a word too long is no word


def test_an_index_built_before_is_read_and_extended_as_it_was_built(tmp_path: Path, monkeypatch):
    folder = tmp_path / "old"
    with monkeypatch.context() as patch:  # as an index was built before the runs were cut into pairs
        patch.setattr(itemsdb, "_split_cjk", lambda text, for_index: text)
        build_items_index(folder, ((i, {"title": t}) for i, t in TITLES.items()), ["title"])
    (folder / WORDS_FILE).unlink()
    old = ItemsIndex(folder)
    assert not old.cjk_pairs
    assert found(old, "東京物語") == ["tokyo"] and found(old, "東京") == ["mixed"]
    apply_meta(folder, {"new": {"title": "東京暮色"}}, [])
    assert found(ItemsIndex(folder), "東京暮色") == ["new"]
    assert not (folder / WORDS_FILE).exists()


def test_an_unreadable_words_file_is_a_clear_error(tmp_path: Path):
    folder = tmp_path / "index"
    build_items_index(folder, [("a", {"title": "東京"})], ["title"])
    assert json.loads((folder / WORDS_FILE).read_text()) == {"cjk": "bigrams"}
    (folder / WORDS_FILE).write_text("{not json")
    with pytest.raises(itemsdb.MalformedDocument, match=WORDS_FILE):
        ItemsIndex(folder)
