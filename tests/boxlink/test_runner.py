"""boxlink.runner: what a pass records, in-process."""

from __future__ import annotations

import pytest

from boxlink.errors import BoxlinkError
from boxlink.status import read_status, update_status
from gigaformat.layout import DatasetDir
from tests.boxlink.walls import DATASET, make_node, publish_source


def test_a_pass_on_a_current_node_costs_a_304_and_clears_a_resolved_error(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    node, counter = make_node(tmp_path / "node", s3_bucket)
    node.sync_dataset(DATASET)
    folder = DatasetDir(tmp_path / "node", DATASET)
    update_status(folder, last_error="cannot reach S3 (an outage, since over)", failures=3)
    calls = counter.snapshot()

    result = node.sync_dataset(DATASET)

    assert result.route == "current" and result.fetch is None
    after = counter.snapshot()
    assert {k: after[k] - calls.get(k, 0) for k in after if after[k] != calls.get(k, 0)} == {"GetObject": 1}
    status = read_status(folder)
    assert (status["last_error"], status["failures"], status["not_modified"]) == (None, 0, 1)


def test_an_unpublished_dataset_is_an_error_in_the_status(s3_bucket, tmp_path):
    node, _ = make_node(tmp_path / "node", s3_bucket)
    with pytest.raises(BoxlinkError, match=r"not published \(no s3://.*/data/missing/manifest.json\)"):
        node.sync_dataset("missing")
    assert "not published" in read_status(DatasetDir(tmp_path / "node", "missing"))["last_error"]
