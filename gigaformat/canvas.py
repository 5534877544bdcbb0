"""A dataset's canvas: ``{"width", "height", "background": "#rrggbb"}``, in ``canvas.json``, the manifest
and every state document."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gigaformat.errors import MalformedDocument

MAX_SIDE = 1 << 24  # 16.7 M pixels on a side: far past any wall we plan, small enough for int math
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Canvas:
    width: int
    height: int
    background: tuple[int, int, int]

    @property
    def background_hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.background)

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "background": self.background_hex}

    @classmethod
    def from_json(cls, doc: object, where: str = "canvas") -> Canvas:
        """The canvas ``doc`` describes; MalformedDocument (naming ``where``) if it is not one."""
        if not isinstance(doc, dict):
            raise MalformedDocument(f"{where}: expected a JSON object with width, height, background")
        sides = []
        for key in ("width", "height"):
            value = doc.get(key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise MalformedDocument(f"{where}: {key} must be a whole number of pixels, got {value!r}")
            if value <= 0:
                raise MalformedDocument(f"{where}: the canvas is empty ({key} = {value}); both sides must be > 0")
            if value > MAX_SIDE:
                raise MalformedDocument(f"{where}: {key} = {value} is larger than the {MAX_SIDE} pixels supported")
            sides.append(value)
        return cls(sides[0], sides[1], parse_colour(doc.get("background", "#000000"), where))


def parse_colour(text: object, where: str) -> tuple[int, int, int]:
    """(r, g, b) of ``"#rrggbb"``; MalformedDocument otherwise."""
    if not isinstance(text, str) or not _HEX_COLOUR.match(text):
        raise MalformedDocument(f"{where}: background must be a colour like '#8b5a2b', got {text!r}")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
