"""Fixtures of the IIIF tests: the official validator's test image published as a one-item dataset, served by
a live ``tiler serve`` (and, for the proxy tests, registered in SeaweedFS behind ``tile-proxy``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from gigaformat.layout import DatasetDir
from tests.processes import Process, free_port, http_ok, start_tiler_serve, wait_for
from tiler.local_publish import publish_local

IDENTIFIER = "67352ccc-d1b0-11e1-89ae-279075081939"  # the identifier the validator's image is known by
VALIDATION_IMAGE = Path(sys.prefix) / "share" / "iiif" / "validation_image.png"  # `make iiif-image`


@dataclass
class Server:
    host: str
    port: int
    process: Process

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def publish_validation_image(root: Path) -> tuple[int, int]:
    """The validator's 1000x1000 image as dataset IDENTIFIER under node root ``root``; its size."""
    assert VALIDATION_IMAGE.is_file(), f"{VALIDATION_IMAGE} is missing: run `make iiif-image`"
    source = root.parent / "validation-source"
    source.mkdir(parents=True, exist_ok=True)
    with Image.open(VALIDATION_IMAGE) as image:
        width, height = image.size
        image.convert("RGB").save(source / "validation.png")
    (source / "canvas.json").write_text(json.dumps({"width": width, "height": height, "background": "#000000"}))
    (source / "items.csv").write_text(f"id,x,y,width,height,image\nvalidation,0,0,{width},{height},validation.png\n")
    publish_local(source, DatasetDir(root, IDENTIFIER))
    return width, height


@pytest.fixture(scope="session")
def awkward_root(tmp_path_factory) -> Path:
    """A node root holding the awkward wall (tests/tiler/awkward_wall.py) as dataset "awkward"."""
    from tests.tiler.awkward_wall import make_awkward_wall

    base = tmp_path_factory.mktemp("iiif-awkward")
    make_awkward_wall(base / "src")
    publish_local(base / "src", DatasetDir(base / "node", "awkward"))
    return base / "node"


@pytest.fixture(scope="session")
def awkward_pyramid_root(tmp_path_factory) -> Path:
    """The awkward wall in the pyramid layout (every level stored or derived from stored tiles)."""
    from tests.tiler.awkward_wall import make_awkward_wall

    base = tmp_path_factory.mktemp("iiif-awkward-pyramid")
    make_awkward_wall(base / "src")
    publish_local(base / "src", DatasetDir(base / "node", "awkward"), store="pyramid")
    return base / "node"


@pytest.fixture(scope="session")
def validation_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iiif") / "node"
    publish_validation_image(root)
    return root


@pytest.fixture(scope="module")
def iiif_server(validation_root, tmp_path_factory):
    """``tiler serve`` of the validation image on 127.0.0.1, one worker."""
    port = free_port()
    log = tmp_path_factory.mktemp("iiif-serve") / "serve.log"
    process = start_tiler_serve(validation_root, IDENTIFIER, "127.0.0.1", port, log, "--workers", "1",
                                "--bucket", "")
    server = Server("127.0.0.1", port, process)
    wait_for(lambda: http_ok(server.url + "/readyz"), 30, "the validation image loaded")
    yield server
    process.stop()


@pytest.fixture
def proxied_server(validation_root, s3_bucket, tmp_path):
    """The validation image on a node at 127.0.0.2, registered in SeaweedFS, behind ``tile-proxy`` on 127.0.0.1
    (the node trusts the proxy's forwarding headers: loopback is trusted by default)."""
    from tests.proxy.conftest import Proxies

    port = free_port("127.0.0.2")
    process = start_tiler_serve(validation_root, IDENTIFIER, "127.0.0.2", port, tmp_path / "node.log",
                                "--workers", "1", "--bucket", s3_bucket.name, "--advertise", "127.0.0.2",
                                env=s3_bucket.env)
    proxies = Proxies(s3_bucket, tmp_path)
    try:
        proxy = proxies.start()
        proxy.wait_live({f"127.0.0.2:{port}"}, timeout=30)
        yield Server("127.0.0.1", proxy.port, proxy.process)
    finally:
        proxies.stop_all()
        process.stop()
