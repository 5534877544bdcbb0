"""The chaos suite's cluster, built once per module: SeaweedFS of its own, a 0.1-Gpx covers wall generated and
published, this project released (wheel and kernels from tests/conftest.py), two nodes through
``scripts/ec2_render.sh --local`` and tile-proxy; the reference render of the wall; the results folder
(``GIGATILE_CHAOS_RESULTS``, default ``build/chaos/``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.release.publisher import publish_release
from localcloud.seaweedfs import SeaweedS3
from tests.chaos.cluster import DATASET, Cluster, Proxy, bucket_on
from tests.chaos.load import Reference
from tests.conftest import REPO
from tests.processes import free_port
from tiler.generate import generate_wall
from tiler.publish import publish

GIGAPIXELS = 0.1
NODES = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, project_wheel: Path, project_kernels: Path) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("chaos")
    (work / "s3").mkdir()
    server = SeaweedS3(work / "s3")
    server.start()
    bucket = bucket_on(server, "chaos")
    built = Cluster(work, server, bucket, work / "wall", Proxy(free_port(), work / "proxy-cache", work, bucket))
    try:
        generate_wall(built.wall, gigapixels=GIGAPIXELS, unique=24, seed=17)
        publish(built.wall, DATASET, bucket.name, bucket.client)
        publish_release(bucket.client, bucket.name, REPO, wheel=project_wheel, kernels=project_kernels)
        for i in range(NODES):
            built.nodes.append(built.launch_node(f"node-{i}"))
        built.proxy.start()
        built.wait_healthy()
    except BaseException:
        built.stop()
        raise
    yield built
    built.stop()


@pytest.fixture(scope="module")
def reference(cluster: Cluster) -> Reference:
    return Reference(cluster.wall, cluster.work / "reference", DATASET)


@pytest.fixture(scope="session")
def chaos_results() -> Path:
    return Path(os.environ.get("GIGATILE_CHAOS_RESULTS") or REPO / "build" / "chaos")
