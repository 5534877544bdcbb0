"""S3 at the edge of the bootstrap package: a client from AWS's own chain, JSON documents, verified
downloads (size and sha256 checked before the file is given its name) and uploads with their sha256."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bootstrap.errors import BootstrapError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def make_client(endpoint_url: str | None = None, region: str | None = None):
    """An S3 client: credentials from the AWS chain (the instance role on EC2), retries configured;
    ``endpoint_url`` only for S3-compatible stores (else ``AWS_ENDPOINT_URL_S3`` or AWS)."""
    config = Config(retries={"max_attempts": 6, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                    s3={"addressing_style": "path"} if endpoint_url else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                           config=config)


def describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip().rstrip(":")
    return f"{exc.__class__.__name__}: {exc}"


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def read_json(client, bucket: str, key: str) -> Any | None:
    """The JSON document at s3://bucket/key, or None if there is no such object."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise BootstrapError(f"cannot read s3://{bucket}/{key} ({describe(exc)})") from None
    except BotoCoreError as exc:
        raise BootstrapError(f"cannot reach S3 for s3://{bucket}/{key} ({describe(exc)})") from None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BootstrapError(f"s3://{bucket}/{key} is not valid JSON ({exc})") from None


def put_json(client, bucket: str, key: str, doc: Any) -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc, indent=1).encode() + b"\n",
                          ContentType="application/json", CacheControl="no-cache")
    except (ClientError, BotoCoreError) as exc:
        raise BootstrapError(f"cannot write s3://{bucket}/{key} ({describe(exc)})") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def upload_file(client, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
    """Upload ``path`` to s3://bucket/key with its sha256 in the object's metadata; returns the sha256."""
    sha256 = file_sha256(path)
    try:
        with path.open("rb") as handle:
            client.put_object(Bucket=bucket, Key=key, Body=handle, ContentType=content_type,
                              Metadata={"sha256": sha256})
    except (ClientError, BotoCoreError, OSError) as exc:
        raise BootstrapError(f"cannot upload {path} to s3://{bucket}/{key} ({describe(exc)})") from None
    return sha256


def download_verified(client, bucket: str, key: str, dest: Path, sha256: str, size: int) -> Path:
    """Download s3://bucket/key to ``dest`` only if it is exactly ``size`` bytes with this ``sha256``.

    The bytes go to ``dest.part`` first (removed on any failure); BootstrapError says what differed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest, received = hashlib.sha256(), 0
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with part.open("wb") as handle:
            for chunk in body.iter_chunks(CHUNK):
                received += len(chunk)
                if received > size:
                    raise BootstrapError(f"s3://{bucket}/{key} is larger than the {size} bytes it was released "
                                         "with; refusing it")
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if received != size:
            raise BootstrapError(f"s3://{bucket}/{key} has {received} bytes, the release says {size}; refusing it")
        if digest.hexdigest() != sha256:
            raise BootstrapError(f"s3://{bucket}/{key} has sha256 {digest.hexdigest()}, the release says {sha256}; "
                                 "refusing it")
    except ClientError as exc:
        part.unlink(missing_ok=True)
        raise BootstrapError(f"cannot download s3://{bucket}/{key} ({describe(exc)})") from None
    except (BotoCoreError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise BootstrapError(f"cannot download s3://{bucket}/{key} ({describe(exc)})") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    log.info("downloaded key=s3://%s/%s bytes=%d sha256=%s", bucket, key, received, sha256[:12])
    return dest
