"""The one time format of gigatile documents: UTC to the second, ``2026-11-23T10:00:00Z``.

Manifests, registration records, markers, status files and release history all use it; file and key
names use the compact form ``20261123T100000Z`` (sorts in time, no colons).
"""

from __future__ import annotations

from datetime import UTC, datetime

from gigaformat.errors import MalformedDocument

ISO = "%Y-%m-%dT%H:%M:%SZ"
COMPACT = "%Y%m%dT%H%M%SZ"


def utc_now() -> datetime:
    """Now, in UTC, to the second (what the documents can hold)."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(ISO)


def utc_now_iso() -> str:
    return iso(utc_now())


def compact(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(COMPACT)


def from_timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def parse_iso(text: str) -> datetime:
    """The moment ``text`` names; MalformedDocument if it is not in the format."""
    try:
        return datetime.strptime(text, ISO).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise MalformedDocument(f"time {text!r} is not of the form 2026-11-23T10:00:00Z") from None
