"""``data/<dataset>/manifest.json``: the commit point of a published dataset (docs/architecture.md).

It names the current generation, the snapshot and the ordered diffs a reader may combine, and every
object with its size and sha256. The publisher writes it last; readers trust nothing it does not list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gigaformat.canvas import Canvas
from gigaformat.errors import FormatError, MalformedDocument, UnsupportedFormat
from gigaformat.names import check_dataset_name

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"


def dataset_prefix(dataset: str) -> str:
    return f"data/{check_dataset_name(dataset)}/"


def manifest_key(dataset: str) -> str:
    return dataset_prefix(dataset) + MANIFEST_NAME


@dataclass(frozen=True)
class ObjectRef:
    key: str  # relative to the dataset prefix
    size: int
    sha256: str

    def to_json(self) -> dict:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, doc: dict) -> ObjectRef:
        key = str(doc["key"])
        if key.startswith("/") or ".." in key.split("/"):
            raise MalformedDocument(f"manifest: object key {key!r} leaves the dataset prefix")
        return cls(key, int(doc["size"]), str(doc["sha256"]))


@dataclass(frozen=True)
class Step:
    """A snapshot (full state) or a diff (changes from ``generation - 1``) and its objects."""

    kind: str  # "snapshot" | "diff"
    generation: int
    index: str  # key of the state (snapshot) or changes (diff) document among ``objects``
    objects: tuple[ObjectRef, ...]
    published: str

    @property
    def nbytes(self) -> int:
        return sum(o.size for o in self.objects)

    def to_json(self) -> dict:
        return {"kind": self.kind, "generation": self.generation, "index": self.index,
                "objects": [o.to_json() for o in self.objects], "published": self.published}

    @classmethod
    def from_json(cls, doc: dict) -> Step:
        step = cls(str(doc["kind"]), int(doc["generation"]), str(doc["index"]),
                   tuple(ObjectRef.from_json(o) for o in doc["objects"]), str(doc.get("published", "")))
        if step.kind not in ("snapshot", "diff") or step.index not in {o.key for o in step.objects}:
            raise MalformedDocument(f"manifest: malformed {step.kind} step at generation {step.generation}")
        return step


@dataclass
class Manifest:
    dataset: str
    generation: int
    canvas: Canvas
    snapshot: Step
    diffs: list[Step] = field(default_factory=list)  # ascending generation; may start before the snapshot
    retired: list[dict] = field(default_factory=list)  # [{"prefix", "since"}]: deleted after retention
    published: str = ""
    tile_size: int = 256

    def to_json(self) -> dict:
        return {
            "format": MANIFEST_FORMAT, "dataset": self.dataset, "generation": self.generation,
            "canvas": self.canvas.to_json(), "tile_size": self.tile_size, "published": self.published,
            "snapshot": self.snapshot.to_json(), "diffs": [d.to_json() for d in self.diffs],
            "retired": self.retired,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """The manifest in ``data``; MalformedDocument (UnsupportedFormat for a newer format) otherwise."""
        try:
            doc = json.loads(data)
            if doc.get("format") != MANIFEST_FORMAT:
                raise UnsupportedFormat(f"manifest format {doc.get('format')!r} is not {MANIFEST_FORMAT}; "
                                        "upgrade gigatile")
            return cls(
                dataset=check_dataset_name(doc["dataset"]), generation=int(doc["generation"]),
                canvas=Canvas.from_json(doc["canvas"]), snapshot=Step.from_json(doc["snapshot"]),
                diffs=[Step.from_json(d) for d in doc.get("diffs", [])], retired=list(doc.get("retired", [])),
                published=str(doc.get("published", "")), tile_size=int(doc.get("tile_size", 256)),
            )
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedDocument(f"manifest is malformed ({exc.__class__.__name__}: {exc})") from None

    def objects(self) -> dict[str, ObjectRef]:
        """Every object the manifest lists, by key."""
        found = {o.key: o for o in self.snapshot.objects}
        for step in self.diffs:
            found.update((o.key, o) for o in step.objects)
        return found


def plan_steps(manifest: Manifest, local_generation: int | None) -> list[Step]:
    """The steps that bring a reader at ``local_generation`` (None: nothing yet) to the manifest's.

    Diffs alone when the reader holds their base and they cost fewer bytes than the snapshot path;
    otherwise the snapshot then the diffs after it. Empty when the reader is current.
    """
    target = manifest.generation
    if local_generation == target:
        return []
    by_gen = {d.generation: d for d in manifest.diffs}
    via_snapshot = [manifest.snapshot] + [by_gen[g] for g in range(manifest.snapshot.generation + 1, target + 1)]
    if local_generation is not None and local_generation < target:
        wanted = range(local_generation + 1, target + 1)
        if all(g in by_gen for g in wanted):
            via_diffs = [by_gen[g] for g in wanted]
            if sum(s.nbytes for s in via_diffs) <= sum(s.nbytes for s in via_snapshot):
                return via_diffs
    return via_snapshot
