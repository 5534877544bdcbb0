"""Names in gigatile: datasets (in S3 keys, node folders, URLs) and item ids (in items.csv and URLs)."""

from __future__ import annotations

import re

from gigaformat.errors import InvalidName

DATASET_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"  # for URL patterns that embed it
ITEM_ID_PATTERN = r"[A-Za-z0-9._:@+-]{1,128}"
_DATASET = re.compile(rf"^{DATASET_PATTERN}$")
_ITEM_ID = re.compile(rf"^{ITEM_ID_PATTERN}$")
DATASET_RULE = "1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
ITEM_ID_RULE = "1-128 letters, digits or ._:@+-"


def is_dataset_name(name: object) -> bool:
    return isinstance(name, str) and _DATASET.match(name) is not None


def check_dataset_name(name: object) -> str:
    """``name`` if it is a valid dataset name; InvalidName otherwise."""
    if not is_dataset_name(name):
        raise InvalidName(f"dataset name {name!r}: use {DATASET_RULE}")
    return name  # type: ignore[return-value]


def is_item_id(text: object) -> bool:
    return isinstance(text, str) and _ITEM_ID.match(text) is not None
