"""A botocore data folder with only what an S3 client reads, derived from the installed botocore and cached.

Building a botocore S3 client reads its data files: the service model of all ~100 S3 operations (1.3 MB of
JSON), ``endpoints.json`` of every AWS service (1.2 MB), and it lists every service's folder (400-odd) twice
to check that S3 is one of them. That was 70-90 ms of a ``boxlink sync`` that lasts 0.8 s (measured
2026-12-02). The folder this module keeps holds the same files cut to S3: the service model with only the
operations a caller names (and every shape they reach), ``endpoints.json`` with only the ``s3`` entry of each
partition, and S3's endpoint rules, the partitions, the retry and default-configuration documents as
botocore ships them. A client built from it resolves endpoints, signs, retries and parses errors exactly as a
client built from botocore's own folder (tests/gigaformat/test_s3data.py compares both); it knows no other
operation. Built about 20 ms.

The folder is ``$XDG_CACHE_HOME/gigatile/botocore-<version>-s3-<operations digest>/`` (``~/.cache`` when the
variable is unset), written once by the first process that needs it (in a temporary folder, then renamed)
and read by every later one. When it cannot be written, or when AWS's own chain names other model folders
(``AWS_DATA_PATH``, ``~/.aws/models``), botocore's default loader is used, as before.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import botocore
from botocore.loaders import Loader

log = logging.getLogger(__name__)

API_VERSION = "2006-03-01"
COPIED = ("partitions.json", "sdk-default-configuration.json", "_retry.json")
COPIED_S3 = ("service-2.sdk-extras.json", "endpoint-rule-set-1.json.gz")


def _botocore_data() -> Path:
    return Path(botocore.__file__).parent / "data"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gigatile"


def _read_json(path: Path):
    if path.suffix == ".gz":
        return json.loads(gzip.decompress(path.read_bytes()))
    return json.loads(path.read_bytes())


def _service_file(folder: Path, name: str) -> Path:
    plain = folder / f"{name}.json"
    return plain if plain.is_file() else folder / f"{name}.json.gz"


def trimmed_model(model: dict, operations: tuple[str, ...]) -> dict:
    """``model`` with only ``operations`` and the shapes they reach (inputs, outputs, errors, members)."""
    shapes, reached = model["shapes"], set()

    def reach(name: str) -> None:
        if name in reached:
            return
        reached.add(name)
        shape = shapes[name]
        for part in ("member", "key", "value"):
            if part in shape:
                reach(shape[part]["shape"])
        for member in shape.get("members", {}).values():
            reach(member["shape"])

    kept = {name: model["operations"][name] for name in operations}
    for operation in kept.values():
        for part in ("input", "output"):
            if part in operation:
                reach(operation[part]["shape"])
        for error in operation.get("errors", []):
            reach(error["shape"])
    return {**model, "operations": kept, "shapes": {k: v for k, v in shapes.items() if k in reached}}


def write_folder(target: Path, operations: tuple[str, ...], source: Path | None = None) -> None:
    """Write the S3-only data folder for ``operations`` into ``target`` (which must not exist yet)."""
    source = source or _botocore_data()
    s3 = target / "s3" / API_VERSION
    s3.mkdir(parents=True)
    for name in COPIED:
        shutil.copyfile(source / name, target / name)
    for name in COPIED_S3:
        shutil.copyfile(source / "s3" / API_VERSION / name, s3 / name)
    model = _read_json(_service_file(source / "s3" / API_VERSION, "service-2"))
    (s3 / "service-2.json").write_text(json.dumps(trimmed_model(model, operations), separators=(",", ":")))
    endpoints = _read_json(source / "endpoints.json")
    for partition in endpoints["partitions"]:
        partition["services"] = {k: v for k, v in partition["services"].items() if k == "s3"}
    (target / "endpoints.json").write_text(json.dumps(endpoints, separators=(",", ":")))


def folder_for(operations: tuple[str, ...]) -> Path:
    digest = hashlib.sha256(",".join(sorted(operations)).encode()).hexdigest()[:12]
    return _cache_root() / f"botocore-{botocore.__version__}-s3-{digest}"


def s3_loader(session, operations: tuple[str, ...]) -> Loader | None:
    """A botocore ``Loader`` reading only the cached S3 folder for ``operations`` (written first if need be), or
    None where botocore's default loader must stay (other model folders configured, or no writable cache)."""
    if session.get_config_variable("data_path") or Path(Loader.CUSTOMER_DATA_PATH).exists():
        return None
    try:
        folder = folder_for(operations)  # RuntimeError: no home folder to find the cache in
    except RuntimeError as exc:
        log.info("botocore data not cut to S3 (%s); using botocore's own", exc)
        return None
    if not folder.is_dir():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
            try:
                write_folder(scratch / "data", operations)
                os.replace(scratch / "data", folder)  # another process may have won: its folder is the same
            except OSError:
                if not folder.is_dir():
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        except (OSError, KeyError, ValueError) as exc:
            log.info("botocore data not cut to S3 (%s); using botocore's own", exc)
            return None
    return Loader(extra_search_paths=[str(folder)], include_default_search_paths=False)


def discard_folder(operations: tuple[str, ...], reason: Exception) -> None:
    """Remove the cut folder a client could not be built from (written again by the next process)."""
    folder = folder_for(operations)
    log.warning("botocore data cut to S3 unreadable, removed (%s): %s", reason, folder)
    shutil.rmtree(folder, ignore_errors=True)
