"""An S3 outage at start and in the middle of a sync: ``boxlink run`` waits, keeps serving, then completes.

This test owns its SeaweedFS server (stopping the session's would break the other tests).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

from boxlink.status import read_status
from gigaformat.layout import DatasetDir
from localcloud.seaweedfs import SeaweedS3
from tests.boxlink.walls import DATASET, big_edit, publish_source
from tests.conftest import unique_bucket_name, without_aws_profile
from tests.processes import BIN, Process, wait_for
from tiler.dataset import LoadedDataset


@dataclass(frozen=True)
class OwnBucket:
    name: str
    client: Any


def _error_recorded(folder: DatasetDir) -> bool:
    status = read_status(folder)
    return bool(status.get("last_error")) and status.get("failures", 0) >= 1


def _synced(folder: DatasetDir, generation: int) -> bool:
    """synch.down names ``generation`` and the status file has recorded the successful pass."""
    status = read_status(folder)
    return folder.down_generation() == generation and status.get("local_generation") == generation \
        and status.get("last_error") is None


def test_outage_at_start_and_mid_sync_keeps_last_good_generation(tmp_path, wall):
    (tmp_path / "weed").mkdir()
    server = SeaweedS3(tmp_path / "weed", volume_max=8)
    server.start()
    run = None
    try:
        bucket = OwnBucket(unique_bucket_name("outage"), server.client())
        bucket.client.create_bucket(Bucket=bucket.name)
        publish_source(wall, bucket)
        env = {**without_aws_profile(os.environ), **server.env(), "GIGATILE_BUCKET": bucket.name}
        root = tmp_path / "node"
        folder = DatasetDir(root, DATASET)
        folder.mark_active()

        server.stop(grace=0.2)  # 1. down before boxlink starts: it waits and says why
        run = Process([str(BIN / "boxlink"), "run", "--root", str(root), "--interval", "0.3", "--retry-max", "1",
                       "--attempts", "2", "--concurrency", "1", "--chunk-mb", "4"], tmp_path / "run.log", env)
        wait_for(lambda: _error_recorded(folder) or not run.alive(), 60, "the outage in the status file")
        assert run.alive() and folder.down_generation() is None, run.output()[-2000:]
        assert "cannot connect" in read_status(folder)["last_error"]
        server.start()
        wait_for(lambda: _synced(folder, 1) or not run.alive(), 60, "generation 1 after the outage")

        big_edit(wall)  # 2. down while generation 2 is coming
        publish_source(wall, bucket)
        wait_for(lambda: any(folder.objects.rglob("*.part")) or not run.alive(), 30, "a download in flight",
                 interval=0.002)
        run.signal(signal.SIGSTOP)  # hold it mid-transfer while the server goes away
        server.stop(grace=0.2)
        run.signal(signal.SIGCONT)
        wait_for(lambda: _error_recorded(folder) or not run.alive(), 60, "the mid-sync failure")
        assert run.alive(), run.output()[-2000:]
        assert folder.current_generation() == folder.down_generation() == 1
        assert LoadedDataset.open(folder).generation == 1  # still servable meanwhile
        server.start()
        wait_for(lambda: _synced(folder, 2) or not run.alive(), 60, "generation 2 after the outage")
        assert folder.current_generation() == 2
        assert not list(folder.objects.rglob("*.part"))
        run.signal(signal.SIGTERM)
        assert run.popen.wait(15) == 0
    finally:
        if run is not None:
            run.stop()
        server.stop()
