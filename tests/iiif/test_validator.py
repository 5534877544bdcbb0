"""The official IIIF Image API validator (``iiif-validator`` 1.0.5 from PyPI) at level 2, version 3.0, against a
live ``tiler serve`` of its own test image, directly and through tile-proxy: every test must pass."""

from __future__ import annotations

import re
import subprocess

import httpx

from tests.iiif.conftest import IDENTIFIER, Server
from tests.processes import BIN

LEVEL2_TESTS = 33  # what iiif-validate.py runs for --version=3.0 --level 2


def validate(server: Server) -> None:
    done = subprocess.run([str(BIN / "python"), str(BIN / "iiif-validate.py"), "-s", server.address, "-p", "iiif/3",
                           "-i", IDENTIFIER, "--version=3.0", "--level", "2"],
                          capture_output=True, text=True, timeout=240)
    report = done.stdout + done.stderr
    failed = [line for line in report.splitlines() if line.endswith(" FAIL")]
    assert done.returncode == 0 and not failed, report[-6000:]
    summary = re.search(r"Done \((\d+) tests, (\d+) failures\)", report)
    assert summary and (int(summary[1]), int(summary[2])) == (LEVEL2_TESTS, 0), report[-3000:]


def test_the_official_validator_passes_at_level_2(iiif_server):
    validate(iiif_server)


def test_the_official_validator_passes_through_tile_proxy(proxied_server):
    validate(proxied_server)
    info = httpx.get(f"{proxied_server.url}/iiif/3/{IDENTIFIER}/info.json").json()
    assert info["id"] == f"{proxied_server.url}/iiif/3/{IDENTIFIER}"  # the proxy's origin, not the node's
    https = httpx.get(f"{proxied_server.url}/iiif/3/{IDENTIFIER}/info.json",
                      headers={"Host": "wall.example:8443"}).json()
    assert https["id"] == f"http://wall.example:8443/iiif/3/{IDENTIFIER}"
    preflight = httpx.options(f"{proxied_server.url}/iiif/3/{IDENTIFIER}/info.json",
                              headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
