"""The format layer is free of the renderer: boxlink, tile-proxy and node-bootstrap start without libvips,
numba or starlette's server pieces they do not use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RENDERER = ("pyvips", "numba")

ENTRY_POINTS = {
    "gigaformat": ["gigaformat.canvas", "gigaformat.clock", "gigaformat.commandline", "gigaformat.deepzoom",
                   "gigaformat.durable", "gigaformat.errors", "gigaformat.layout", "gigaformat.levels",
                   "gigaformat.manifest", "gigaformat.names", "gigaformat.packs", "gigaformat.registration",
                   "gigaformat.s3", "gigaformat.state"],
    "boxlink": ["boxlink.cli", "boxlink.runner", "boxlink.apply", "boxlink.remote", "boxlink.status"],
    "tile-proxy": ["proxy.cli", "proxy.app", "proxy.registry"],
    "node-bootstrap": ["bootstrap.cli", "bootstrap.node.lifecycle", "bootstrap.release.publisher",
                       "bootstrap.launch.cli", "bootstrap.launch.localnode"],
}


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("program", sorted(ENTRY_POINTS))
def test_entry_points_import_without_the_renderer(program):
    loaded = loaded_after_import(ENTRY_POINTS[program])
    assert not {m.split(".")[0] for m in loaded} & set(RENDERER), sorted(m for m in loaded if m.split(".")[0]
                                                                        in RENDERER)[:5]
    assert "tiler" not in {m.split(".")[0] for m in loaded}, "a part outside tiler loaded the tiler package"


ALLOWED = {"gigaformat", "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "certifi"}
INTERPRETER = {"_distutils_hack", "__main__", "__mp_main__", "sitecustomize", "usercustomize"}


def test_the_format_layer_imports_only_the_standard_library_and_boto3():
    loaded = {m.split(".")[0] for m in loaded_after_import(ENTRY_POINTS["gigaformat"])}
    outside = loaded - set(sys.stdlib_module_names) - ALLOWED - INTERPRETER
    assert not outside, sorted(outside)


def test_a_render_worker_starts_without_numba_or_boto3():
    """Each tiler serve worker imports the app at a node's start (its cold start's critical path): numba
    comes with the first kernel call (tiler/jit.py), botocore with the first lazy dataset (tiler/lazyfetch.py)."""
    loaded = {m.split(".")[0] for m in loaded_after_import(["tiler.cli", "tiler.serve", "tiler.app"])}
    assert not loaded & {"numba", "boto3", "botocore"}, sorted(loaded & {"numba", "boto3", "botocore"})


def test_node_bootstrap_starts_on_the_standard_library_and_boto3():
    """What a node runs first (and the local launcher, which waits for its IMDS emulator) reads IMDS with urllib3,
    which botocore brings: httpx (with its command line's rich and click) cost 0.15-0.27 s on every start."""
    loaded = {m.split(".")[0] for m in loaded_after_import(["bootstrap.cli", "bootstrap.node.lifecycle",
                                                            "bootstrap.launch.cli", "bootstrap.launch.localnode"])}
    outside = loaded - set(sys.stdlib_module_names) - ALLOWED - INTERPRETER - {"bootstrap", "installer"}
    assert not outside, sorted(outside)
