"""The items index of a generation: every item's metadata and a full-text index of it (Tantivy).

Measured on 2.2 million items (tiler/README.md, "The bookstore"): SQLite FTS5 took 126 s to build 1.47 GB
and 10–30 ms, up to 1.3 s, to rank a common word; Tantivy builds 412 MB in 54 s and ranks one in ≤ 9 ms.

The publisher builds it for a snapshot and ships it as one uncompressed tar object
(``snap-<g>/items.index.tar``; its segments are compressed already); a diff carries the metadata it
changes (``meta_set``, with ``items_remove``), and a node applies them to a copy of the generation before
(``stage_items_index``: the copy is hard links, Tantivy never rewrites a segment), so a metadata-only change
is a small diff. A generation's metadata columns are fixed by its snapshot (a new column makes a snapshot).

Fields: ``id`` (exact), ``doc`` (the item's metadata, a JSON object, stored), ``text`` (every cell but
links, composed (NFC) and cut into words by ``_analyzer``: lowercase, folded to ASCII where a
letter has an ASCII form), and ``m_<column>`` per column (exact values, for filters).

Chinese and Japanese are written without spaces, so a run of Han, hiragana or katakana is indexed as its
overlapping pairs of characters and its single characters (``_split_cjk``), and a query's run as its pairs
(or its character): 東京 finds 東京物語. An index says so in ``gigatile-words.json``; one without it (built
before) holds each run as one word, and is read and extended that way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

from gigaformat.errors import MalformedDocument

ITEMS_INDEX_NAME = "items.index"  # a folder in generations/<g>/
ITEMS_ARCHIVE_NAME = "items.index.tar"  # the snapshot's object
NOT_INDEXED = ("url",)  # columns kept and filterable but not in the full-text index
FOLDED = "folded"  # the tokenizer of ``text``: words, lowercase, ASCII-folded
WORDS_FILE = "gigatile-words.json"  # how the index cut its words: {"cjk": "bigrams"}; absent: runs whole
# Han (with its extensions, compatibility ideographs and the marks 々 〆 〇 〻), hiragana, katakana (with the
# prolonged sound mark and half-width forms); not the middle dot ・ nor the combining sound marks, which are no
# part of a word (the analyzer drops them)
_CJK_RUN = re.compile("[\u3005-\u3007\u303b\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"
                      "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U000323af]+")
_TYPED_WORD = re.compile(r"[^\W_]+")  # a word as the analyzer cuts one: a run of letters and digits
WRITER_HEAP = 128 << 20
MIN_PREFIX = 3  # the last word of a query also matches as a word's start from this many characters
PREFIX_EXPANSIONS = 32  # ... as one of its this many most frequent completions
COMMON_SHARE = 0.05  # ... unless the word itself is in this share of the items (typed whole)
Meta = Mapping[str, str]


def meta_digest(meta: Meta) -> str:
    """What a state keeps of an item's metadata: 16 hex of the sha256 of its canonical JSON ("" for none)."""
    if not meta:
        return ""
    return hashlib.sha256(json.dumps(dict(sorted(meta.items())), separators=(",", ":")).encode()).hexdigest()[:16]


def search_words(text: str, cjk_pairs: bool = True, limit: int | None = None) -> list[str]:
    """The words to look up for the query ``text``, as the index holds its items' words: the index's own analyzer
    (``_analyzer``) on the text composed (NFC), so a query finds what was indexed (Søren -> soren, Straße ->
    strasse); a run of Chinese or Japanese as pairs of characters that cover it (東京物語 -> 東京 物語, 東京都 ->
    東京 京都; the index holds every pair), unless ``cjk_pairs`` is False (an index built before:
    ``ItemsIndex.cjk_pairs``). ``limit``: only the first this many words of the text as typed (a run counts as
    one word, whatever its pairs); each word looked up once."""
    text = unicodedata.normalize("NFC", text)
    if not cjk_pairs:
        return _analyzer().analyze(text)[:limit]
    if limit is not None:  # words the analyzer would drop whole (too long, and no Chinese or Japanese) not counted
        typed = [w for w in _TYPED_WORD.findall(text) if len(w.encode()) < 64 or _CJK_RUN.search(w)]
        text = " ".join(typed[:limit])
    return list(dict.fromkeys(_analyzer().analyze(_split_cjk(text, for_index=False))))


def _split_cjk(text: str, for_index: bool) -> str:
    """``text`` with each run of Han, hiragana or katakana cut into pairs of characters, spaced apart: for the
    index every overlapping pair and every single character (so a query's pairs and a single typed character
    are all there); for a query, pairs that cover the run (the last overlapping the one before when the run is
    odd). A run of one character stays itself."""
    def pieces(run: re.Match) -> str:
        chars = run.group()
        if len(chars) == 1:
            return f" {chars} "
        if for_index:
            parts = [chars[i:i + 2] for i in range(len(chars) - 1)] + list(chars)
        else:
            parts = [chars[i:i + 2] for i in range(0, len(chars) - 1, 2)] + ([chars[-2:]] if len(chars) % 2 else [])
        return " " + " ".join(parts) + " "

    return _CJK_RUN.sub(pieces, text)


def _analyzer():
    """Words of the full-text field: runs of letters and digits, lowercase, folded to ASCII where a letter has an
    ASCII form (Ø -> o, ß -> ss, Æ -> ae, é -> e), other letters kept (東京, война); words of 64 bytes or more
    are left out. Runs of Chinese and Japanese are cut before (``_split_cjk``). A microsecond to build, so each
    use builds its own."""
    tantivy = _tantivy()
    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.remove_long(64))
            .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.ascii_fold()).build())


def _tantivy():
    import tantivy  # only what reads or writes the items index needs it (boxlink, tiler serve, tiler publish)

    return tantivy


def _schema(columns: Iterable[str]):
    tantivy = _tantivy()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("doc", stored=True, index_option="basic", tokenizer_name="raw")
    builder.add_text_field("text", stored=False, tokenizer_name=FOLDED)
    for column in columns:
        builder.add_text_field(f"m_{column}", stored=False, tokenizer_name="raw")
    return builder.build()


def _register(index) -> None:
    index.register_tokenizer(FOLDED, _analyzer())


def _document(item_id: str, meta: Meta, cjk_pairs: bool = True):
    tantivy = _tantivy()
    text = unicodedata.normalize("NFC", " ".join(v for k, v in meta.items() if k not in NOT_INDEXED))
    fields = {"id": item_id, "doc": json.dumps(dict(meta), separators=(",", ":"), ensure_ascii=False),
              "text": _split_cjk(text, for_index=True) if cjk_pairs else text}
    fields.update({f"m_{k}": v for k, v in meta.items()})
    return tantivy.Document(**fields)


def _columns_file(folder: Path) -> Path:
    return folder / "gigatile-columns.json"


def _cjk_pairs(folder: Path) -> bool:
    """True if the index in ``folder`` holds Chinese and Japanese as pairs of characters (``WORDS_FILE``)."""
    try:
        return json.loads((folder / WORDS_FILE).read_text()).get("cjk") == "bigrams"
    except FileNotFoundError:
        return False
    except (OSError, ValueError, AttributeError) as exc:
        raise MalformedDocument(f"{folder / WORDS_FILE}: unreadable ({exc})") from None


def build_items_index(folder: Path, items: Iterable[tuple[str, Meta]], columns: Iterable[str]) -> None:
    """Write a new index of ``items`` ((id, metadata)) into ``folder`` (replaced)."""
    columns = list(columns)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    index = _tantivy().Index(_schema(columns), path=str(folder), reuse=False)
    _register(index)
    writer = index.writer(heap_size=WRITER_HEAP, num_threads=1)  # one thread: the same items, the same segments
    for item_id, meta in items:
        writer.add_document(_document(item_id, meta))
    writer.commit()
    writer.wait_merging_threads()
    _columns_file(folder).write_text(json.dumps(columns))
    (folder / WORDS_FILE).write_text(json.dumps({"cjk": "bigrams"}))


def archive_items_index(folder: Path, archive: Path) -> None:
    """The index as one tar (sorted names, no times or owners: the same index, the same bytes)."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)


def _unpack(archive: Path, folder: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith("."):
                raise MalformedDocument(f"{archive}: unexpected member {member.name!r}")
        tar.extractall(folder, filter="data")


def _link_copy(source: Path, folder: Path) -> None:
    """``folder`` holding hard links to ``source``'s files (Tantivy writes new files, never old ones)."""
    folder.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith(".tantivy"):
            os.link(path, folder / path.name)


def apply_meta(folder: Path, meta_set: Mapping[str, Meta], removed: Iterable[str]) -> None:
    """Apply a diff to the index in ``folder``: items removed, items whose metadata is set."""
    tantivy = _tantivy()
    index = tantivy.Index.open(str(folder))
    _register(index)
    cjk_pairs = _cjk_pairs(folder)  # an index built before keeps cutting its words as it did
    writer = index.writer(heap_size=WRITER_HEAP, num_threads=1)
    for item_id in [*removed, *meta_set]:
        writer.delete_documents_by_term("id", item_id)
    for item_id, meta in meta_set.items():
        writer.add_document(_document(item_id, meta, cjk_pairs))
    writer.commit()
    writer.wait_merging_threads()


def stage_items_index(target: Path, snapshot_archive: Path | None, base: Path | None,
                      diffs: Iterable[tuple[Mapping[str, Meta], list[str]]]) -> None:
    """Make a generation's index at ``target``: the snapshot's archive unpacked (or a copy of ``base``, the
    index of the generation the diffs start from), then each diff's (meta_set, items_remove) applied."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if snapshot_archive is not None:
        tmp.mkdir(parents=True)
        _unpack(snapshot_archive, tmp)
    elif base is not None and base.is_dir():
        _link_copy(base, tmp)
    else:
        raise MalformedDocument(f"no items index to start {target} from")
    try:
        for meta_set, removed in diffs:
            apply_meta(tmp, meta_set, removed)
    except (OSError, ValueError) as exc:
        raise MalformedDocument(f"{target}: cannot apply the diff's metadata ({exc})") from None
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


class ItemsIndex:
    """A generation's index, open for reading: metadata by id, and search."""

    def __init__(self, folder: Path):
        tantivy = _tantivy()
        try:
            self.columns: list[str] = json.loads(_columns_file(folder).read_text())
            self.index = tantivy.Index.open(str(folder))
            self.cjk_pairs = _cjk_pairs(folder)  # a query is cut into words as this index cut its items' words
        except (OSError, ValueError) as exc:
            raise MalformedDocument(f"{folder}: not an items index ({exc})") from None
        _register(self.index)
        self.schema = self.index.schema
        self.searcher = self.index.searcher()
        self.tantivy = tantivy

    def meta(self, ids: list[str]) -> dict[str, dict]:
        """The metadata of each of ``ids`` that the index holds."""
        # one term query per id: ~10 us each, where a term-set query costs ~0.2 ms for one id and more than
        # the loop up to 500 (measured on 100,000 items)
        term = self.tantivy.Query.term_query
        found = {}
        for item_id in ids:
            for _, address in self.searcher.search(term(self.schema, "id", item_id), 1, count=False).hits:
                found[item_id] = json.loads(self.searcher.doc(address)["doc"][0])
        return found

    def search(self, words: list[str], filters: Iterable[tuple[str, str]], limit: int, offset: int
               ) -> tuple[int, list[str]]:
        """(matches, ids best first): items holding every word and every ``column = value``; the last word
        also as a word's start (search as you type: "prefix last"), see ``_last_word``."""
        q = self.tantivy.Query
        occur = self.tantivy.Occur
        clauses = [(occur.Must, q.term_query(self.schema, "text", word)) for word in words[:-1]]
        clauses += [(occur.Must, self._last_word(words[-1]))] if words else []
        clauses += [(occur.Must, q.term_query(self.schema, f"m_{name}", value)) for name, value in filters]
        result = self.searcher.search(q.boolean_query(clauses), limit, count=True, offset=offset)
        return result.count, [self.searcher.doc(address)["id"][0] for _, address in result.hits]

    def _last_word(self, word: str):
        """The word, or any of its ``PREFIX_EXPANSIONS`` most frequent completions (the word itself ranked
        twice as high) once it has ``MIN_PREFIX`` characters and is not itself in ``COMMON_SHARE`` of the
        items.

        Measured on 2,232,920 items: "the" is in 1.3 M of them, and expanding it (to "theo", 250,000 more)
        cost 30 ms where the word alone costs 8 ms; expanding every word of a whole title cost p50 6.6 ms
        where prefix-last costs 2.1 ms. Completions as term queries rank by BM25 like the word itself."""
        q = self.tantivy.Query
        exact = q.term_query(self.schema, "text", word)
        if len(word) < MIN_PREFIX or self.searcher.doc_freq("text", word) >= COMMON_SHARE * self.searcher.num_docs:
            return exact
        completions = [term for term, _ in self.searcher.terms_with_prefix("text", word, limit=PREFIX_EXPANSIONS)
                       if term != word]
        if not completions:
            return exact
        occur = self.tantivy.Occur
        return q.boolean_query([(occur.Should, q.boost_query(exact, 2.0)),
                                *((occur.Should, q.term_query(self.schema, "text", term)) for term in completions)])
