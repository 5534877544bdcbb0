"""Plain-text tables and numbers as the benches print them."""

from __future__ import annotations

from collections.abc import Sequence


def number(value: float) -> str:
    """3 significant digits below 1000, whole numbers with thousands separators above."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain left-aligned columns (pastes into issues and READMEs as it is)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
