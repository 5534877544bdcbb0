"""S3 at the edge of the bootstrap package: clients (``gigaformat.s3``), JSON documents, verified downloads
(size and sha256 checked before the file is given its name) and uploads with their sha256."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bootstrap.errors import BootstrapError
from gigaformat import s3

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def make_client(endpoint_url: str | None = None, region: str | None = None, reads_only: bool = False):
    """An S3 client: credentials from the AWS chain (the instance role on EC2); ``endpoint_url`` only for
    S3-compatible stores (else ``AWS_ENDPOINT_URL_S3`` or AWS). ``reads_only``: a client of GetObject alone
    (a node's: pointers, the bundle, kernels), built without boto3 from botocore's data cut to it
    (gigaformat.s3data): ~0.2 s sooner in a node's start."""
    cut = {"transfer_methods": False, "operations": ("GetObject",)} if reads_only else {}
    return s3.make_client(attempts=6, connect_timeout=5, read_timeout=30, max_connections=10,
                          endpoint_url=endpoint_url, region=region, **cut)


def _failed(exc: Exception, doing: str, bucket: str) -> BootstrapError:
    return BootstrapError(str(s3.storage_error(exc, doing, bucket)))


def check_bucket(client, bucket: str) -> None:
    """BootstrapError naming the cause (no credentials, no such bucket, access denied, unreachable) unless
    ``bucket`` is there and ours to use; cheap, so that long work is not done for nothing."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if s3.error_code(exc) in ("404", "NotFound"):  # a HEAD answer has no body, so no NoSuchBucket code
            exc = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "no such bucket"}}, "HeadBucket")
        raise _failed(exc, f"cannot use s3://{bucket}", bucket) from None
    except BotoCoreError as exc:
        raise _failed(exc, f"cannot use s3://{bucket}", bucket) from None


def read_json(client, bucket: str, key: str) -> Any | None:
    """The JSON document at s3://bucket/key, or None if there is no such object."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if s3.is_missing(exc):
            return None
        raise _failed(exc, f"cannot read s3://{bucket}/{key}", bucket) from None
    except BotoCoreError as exc:
        raise _failed(exc, f"cannot read s3://{bucket}/{key}", bucket) from None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BootstrapError(f"s3://{bucket}/{key} is not valid JSON ({exc})") from None


def put_json(client, bucket: str, key: str, doc: Any) -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc, indent=1).encode() + b"\n",
                          ContentType="application/json", CacheControl="no-cache")
    except (ClientError, BotoCoreError) as exc:
        raise _failed(exc, f"cannot write s3://{bucket}/{key}", bucket) from None


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
        raise _failed(exc, f"cannot upload {path} to s3://{bucket}/{key}", bucket) from None
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
    except (ClientError, BotoCoreError) as exc:
        part.unlink(missing_ok=True)
        raise _failed(exc, f"cannot download s3://{bucket}/{key}", bucket) from None
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise BootstrapError(f"cannot download s3://{bucket}/{key} to {part} ({exc})") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    log.info("downloaded key=s3://%s/%s bytes=%d sha256=%s", bucket, key, received, sha256[:12])
    return dest
