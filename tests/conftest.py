"""Shared pytest fixtures. Each group is marked by a heading comment; add new groups the same way."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from bootstrap.release.kernels import build_kernels
from bootstrap.release.publisher import build_wheel
from localcloud.seaweedfs import SeaweedS3

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


# --- S3: one real SeaweedFS server per session, a fresh bucket per test ---------------------------------------


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on the session's S3 server; `env` is a complete environment for a subprocess using it."""

    name: str
    client: Any  # boto3 S3 client
    endpoint_url: str
    env: dict[str, str]


OVERRIDING_AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN")  # would pick or mix in other credentials


def without_aws_profile(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k not in OVERRIDING_AWS_VARIABLES}


def unique_bucket_name(hint: str) -> str:
    """A fresh valid bucket name (3-63 characters of [a-z0-9-]) that starts with a slug of `hint`."""
    slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].rstrip("-") or "t"
    return f"{slug}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A started SeaweedFS S3 server shared by the session; do not stop it from a test."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3, request: pytest.FixtureRequest) -> Iterator[S3Bucket]:
    """A new empty bucket on the session server, deleted with its contents afterwards."""
    name = unique_bucket_name(request.node.name)
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    env = {**without_aws_profile(os.environ), **s3_server.env(), "GIGATILE_BUCKET": name}
    yield S3Bucket(name=name, client=client, endpoint_url=s3_server.endpoint_url, env=env)
    try:  # SeaweedFS deletes a non-empty bucket with its objects, which frees its volume for the next test
        client.delete_bucket(Bucket=name)
    except (BotoCoreError, ClientError) as e:
        log.warning("bucket cleanup failed bucket=%s error=%s", name, e)


@pytest.fixture
def s3_env(s3_bucket: S3Bucket, s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """Point in-process AWS SDK calls at `s3_bucket` (AWS_* and GIGATILE_BUCKET in os.environ)."""
    for key, value in {**s3_server.env(), "GIGATILE_BUCKET": s3_bucket.name}.items():
        monkeypatch.setenv(key, value)
    for key in OVERRIDING_AWS_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    return s3_bucket


# --- releases: this project's wheel and its render kernels, built once per session ------------------------


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project's wheel, built once per session the way ``node-bootstrap release`` builds it."""
    return build_wheel(REPO, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def project_kernels(project_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's render kernels compiled for this machine (runs tiler.warmup in a scratch install)."""
    return build_kernels(project_wheel, tmp_path_factory.mktemp("kernels"))
