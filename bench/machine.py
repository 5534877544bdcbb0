"""Where and with what the figures were measured: CPU, memory, kernel, load, versions of every tool."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PYTHON_PACKAGES = ("numpy", "numba", "pillow", "pyvips", "pyvips-binary", "uvicorn", "httpx", "awscli", "s5cmd",
                   "matplotlib")
# (name, command) for the tools the benches run; iipsrv has no version flag, so Debian's package says.
TOOLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vips", ("vips", "--version")),
    ("nginx", ("nginx", "-v")),
    ("iipsrv", ("dpkg-query", "-W", "-f", "iipimage-server ${Version}", "iipimage-server")),
    ("wrk", ("wrk", "--version")),
    ("aws", ("aws", "--version")),
    ("s5cmd", ("s5cmd", "version")),
)


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def find_tool(name: str) -> str | None:
    """``name`` from this interpreter's bin folder (the venv's aws, s5cmd, tiler), else from PATH."""
    return shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)


def tool_version(args: Sequence[str]) -> str | None:
    """First line of ``args``' output (e.g. ``vips --version``), or None if the tool is absent or fails."""
    found = find_tool(args[0])
    if found is None:
        return None
    try:
        done = subprocess.run([found, *args[1:]], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    if not text or (done.returncode != 0 and args[0] == "dpkg-query"):
        return None
    return text.splitlines()[0]


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _libvips_version() -> str | None:
    try:
        import pyvips

        return ".".join(str(pyvips.version(i)) for i in range(3))
    except Exception:  # noqa: BLE001 - a broken libvips must not stop the description of the machine
        return None


def machine(tools: bool = False) -> dict:
    """CPU model, cores, memory, kernel, load average, Python package versions; with ``tools``, also the
    versions of the command-line tools (a few subprocesses)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
    versions = {name: _package_version(name) for name in PYTHON_PACKAGES}
    versions["libvips (pyvips)"] = _libvips_version()
    doc = {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem_kb // 1024,
           "kernel": platform.release(), "os": _os_name(), "python": platform.python_version(),
           "versions": versions, "load_average": load_average()}
    if tools:
        doc["tools"] = {name: tool_version(args) for name, args in TOOLS}
    return doc


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()
