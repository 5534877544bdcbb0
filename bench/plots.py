"""PNG plots of a suite run (matplotlib, Agg backend): cold-tile latency by level beside the encode floor, and
each throughput beside its anchors."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen before pyplot is imported


def latency_plot(render: dict, path: Path) -> Path | None:
    """p50 and p99 by level for each wall, with the floor, 5× the floor and 25 ms; None without latency data."""
    walls = {name: w for name, w in render.get("walls", {}).items() if "levels" in w}
    if not walls:
        return None
    fig, axes = plt.subplots(1, len(walls), figsize=(6.5 * len(walls), 4.5), squeeze=False)
    for ax, (name, w) in zip(axes[0], walls.items(), strict=True):
        levels = sorted(w["levels"], key=int)
        z = [int(level) for level in levels]
        floor = w["floor"]["ms"]["p50"]
        ax.plot(z, [w["levels"][lv]["ms"]["p50"] for lv in levels], "o-", label="cold p50")
        ax.plot(z, [w["levels"][lv]["ms"]["p99"] for lv in levels], "s--", label="cold p99")
        ax.plot(z, [w["levels"][lv]["cpu_ms"]["p50"] for lv in levels], ".:", label="cpu p50")
        ax.axhline(floor, color="grey", lw=1, label=f"encode floor {floor:.3f} ms")
        ax.axhline(5 * floor, color="tab:red", lw=1, ls="-.", label="bar: p50 ≤ 5× floor")
        ax.axhline(25, color="black", lw=1, ls=":", label="bar: p99 ≤ 25 ms")
        ax.set_yscale("log")
        ax.set_xlabel("level z (0 = whole wall in one tile)")
        ax.set_ylabel("ms per tile (render + JPEG q85)")
        ax.set_title(f"{name} wall: cold tiles by level")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_panels(benches: dict[str, dict]) -> list[tuple[str, str, list[tuple[str, float]]]]:
    """(title, unit, [(label, value), ...]) per comparison, ours first; only the benches that ran."""
    panels = []
    if lv := benches.get("iipsrv", {}).get("levels"):
        for name, level in lv.items():
            panels.append((f"random tiles, {name} level", "requests/s",
                           [(side, r["requests_per_s"]) for side, r in level["best"].items()]))
    if best := benches.get("proxy", {}).get("hits", {}).get("best"):
        panels.append(("cache hits", "requests/s", [("tile-proxy", best["tile-proxy"]["requests_per_s"]),
                                                     ("nginx proxy_cache", best["nginx"]["requests_per_s"])]))
    if figures := benches.get("boxlink", {}).get("figures"):
        panels.append(("replication", "MB/s", list(figures["median_mb_per_second"].items())))
    if export := benches.get("render", {}).get("export"):
        panels.append(("pyramid export, 1-Gpx wall", "tiles/s", [("tiler render", export["tiler"]["tiles_per_s"]),
                                                                 ("vips dzsave", export["dzsave"]["tiles_per_s"])]))
    if publish := benches.get("publish", {}).get("publish"):
        panels.append(("publish upload", "MB/s", [("tiler publish", publish["upload_mb_per_s"]),
                                                  ("aws s3 cp", benches["publish"]["aws"]["mb_per_s"])]))
    return panels


def throughput_plot(benches: dict[str, dict], path: Path) -> Path | None:
    panels = throughput_panels(benches)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 4.2), squeeze=False)
    for ax, (title, unit, bars) in zip(axes[0], panels, strict=True):
        labels, values = zip(*bars, strict=True)
        colours = ["tab:blue"] + ["tab:grey"] * (len(values) - 1)
        drawn = ax.bar(range(len(values)), values, color=colours)
        ax.bar_label(drawn, labels=[f"{v:,.0f}\n{v / values[1]:.2f}×" if i == 0 and len(values) > 1 else f"{v:,.0f}"
                                    for i, v in enumerate(values)], fontsize=7)
        ax.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        ax.margins(y=0.2)
    fig.suptitle("ours (blue) beside its anchors (grey), same run", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(benches: dict[str, dict], stem: Path) -> dict[str, Path]:
    """``<stem>-latency.png`` and ``<stem>-throughput.png`` (those with data); name -> path."""
    made = {"latency by level": latency_plot(benches.get("render", {}), stem.with_name(stem.name + "-latency.png")),
            "throughput vs anchors": throughput_plot(benches, stem.with_name(stem.name + "-throughput.png"))}
    return {name: path for name, path in made.items() if path is not None}
