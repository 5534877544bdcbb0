"""The items database of a generation: every item's metadata and a full-text index of it, one SQLite file.

The publisher builds it for a snapshot (``snap-<g>/items.sqlite``); a diff carries the metadata it changes
(``meta_set``, with ``items_remove``), and a node applies them to a copy of the generation before
(``stage_items_db``), so a metadata-only change is a small diff. The render server opens it read-only.

```
meta(rowid, id UNIQUE, doc)        doc: the item's metadata, a JSON object {column: value}
field(item, name, value)           one row per metadata cell (exact filters), indexed by (name, value)
words(text)                        FTS5 over every cell but urls (unicode61, diacritics folded, prefixes 1-3)
info(key, value)                   "format", "columns" (JSON list)
```
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from gigaformat.errors import MalformedDocument

ITEMS_DB_NAME = "items.sqlite"
ITEMS_DB_FORMAT = 1
NOT_INDEXED = ("url",)  # columns kept and filterable but not in the full-text index
Meta = Mapping[str, str]

_SCHEMA = """
CREATE TABLE meta (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE field (item INTEGER NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX field_by_value ON field (name, value, item);
CREATE INDEX field_by_item ON field (item);
CREATE VIRTUAL TABLE words USING fts5(text, tokenize = "unicode61 remove_diacritics 2", prefix = '1 2 3');
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def meta_digest(meta: Meta) -> str:
    """What a state keeps of an item's metadata: 16 hex of the sha256 of its canonical JSON ("" for none)."""
    if not meta:
        return ""
    return hashlib.sha256(json.dumps(dict(sorted(meta.items())), separators=(",", ":")).encode()).hexdigest()[:16]


def _text(meta: Meta) -> str:
    return " ".join(value for name, value in meta.items() if name not in NOT_INDEXED)


def _insert(db: sqlite3.Connection, item_id: str, meta: Meta) -> None:
    rowid = db.execute("INSERT INTO meta (id, doc) VALUES (?, ?)",
                       (item_id, json.dumps(dict(meta), separators=(",", ":"), ensure_ascii=False))).lastrowid
    db.executemany("INSERT INTO field (item, name, value) VALUES (?, ?, ?)",
                   [(rowid, name, value) for name, value in meta.items()])
    if meta:
        db.execute("INSERT INTO words (rowid, text) VALUES (?, ?)", (rowid, _text(meta)))


def _delete(db: sqlite3.Connection, item_id: str) -> None:
    found = db.execute("SELECT rowid FROM meta WHERE id = ?", (item_id,)).fetchone()
    if found is None:
        return
    db.execute("DELETE FROM words WHERE rowid = ?", found)
    db.execute("DELETE FROM field WHERE item = ?", found)
    db.execute("DELETE FROM meta WHERE rowid = ?", found)


def build_items_db(path: Path, items: Iterable[tuple[str, Meta]], columns: Iterable[str]) -> None:
    """Write a new database of ``items`` ((id, metadata) in drawing order) at ``path`` (replaced)."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 4096;" + _SCHEMA)
        db.executemany("INSERT INTO info (key, value) VALUES (?, ?)",
                       [("format", str(ITEMS_DB_FORMAT)), ("columns", json.dumps(list(columns)))])
        with db:
            for item_id, meta in items:
                _insert(db, item_id, meta)
        db.execute("INSERT INTO words (words) VALUES ('optimize')")
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()


def apply_meta(path: Path, meta_set: Mapping[str, Meta], removed: Iterable[str], columns: Iterable[str]) -> None:
    """Apply a diff to the database at ``path`` in place: items removed, items whose metadata is set."""
    db = sqlite3.connect(path)
    try:
        with db:
            for item_id in removed:
                _delete(db, item_id)
            for item_id, meta in meta_set.items():
                _delete(db, item_id)
                _insert(db, item_id, meta)
            db.execute("INSERT OR REPLACE INTO info (key, value) VALUES ('columns', ?)", (json.dumps(list(columns)),))
    except sqlite3.Error as exc:
        raise MalformedDocument(f"{path}: cannot apply the diff's metadata ({exc})") from None
    finally:
        db.close()


def stage_items_db(target: Path, snapshot_db: Path | None, base_db: Path | None,
                   diffs: Iterable[tuple[Mapping[str, Meta], list[str], list[str]]]) -> None:
    """Write a generation's database at ``target``: a copy of the snapshot's (or of ``base_db``, the
    generation the diffs start from), then each diff's (meta_set, items_remove, columns) applied in order."""
    start = snapshot_db if snapshot_db is not None else base_db
    if start is None or not start.is_file():
        raise MalformedDocument(f"no items database to start {target} from ({start})")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(start, tmp)
    for meta_set, removed, columns in diffs:
        apply_meta(tmp, meta_set, removed, columns)
    tmp.replace(target)


def open_items_db(path: Path) -> sqlite3.Connection:
    """A read-only connection to a generation's database (any thread may use it; nobody writes it)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        found = dict(db.execute("SELECT key, value FROM info"))
    except sqlite3.Error as exc:
        raise MalformedDocument(f"{path}: not an items database ({exc})") from None
    if found.get("format") != str(ITEMS_DB_FORMAT):
        raise MalformedDocument(f"{path}: items database format {found.get('format')!r} is not {ITEMS_DB_FORMAT}")
    return db


def columns_of(db: sqlite3.Connection) -> list[str]:
    return json.loads(dict(db.execute("SELECT key, value FROM info"))["columns"])


