"""S3 access for the publisher and readers: clients, verified reads, concurrent uploads.

Endpoints, credentials and region come from AWS's own chain (``AWS_ENDPOINT_URL_S3`` for a local
server). Transfer policy is one ``TransferConfig``; retries are botocore configuration.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber

from tiler.errors import TilerError
from tiler.manifest import Manifest, ObjectRef, dataset_prefix, manifest_key
from tiler.state import Changes, State, apply_changes, load_gzip_json

log = logging.getLogger(__name__)

MB = 1 << 20
TRANSFER = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=8,
                          use_threads=True)


def make_client(max_connections: int = 32):
    """An S3 client from the standard AWS chain, with retries (backoff and jitter) configured."""
    # Integrity is end to end (sha256 in the manifest, checked by every reader), so botocore's extra
    # per-request CRC32 — computed in Python over every byte — is only cost here.
    config = Config(retries={"max_attempts": 8, "mode": "standard"}, max_pool_connections=max_connections,
                    connect_timeout=5, read_timeout=60, request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return boto3.session.Session().client("s3", config=config)


def describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return f"{exc.__class__.__name__}: {exc}"


def read_manifest(client, bucket: str, dataset: str) -> Manifest | None:
    """The dataset's manifest, or None if the dataset was never published."""
    try:
        body = client.get_object(Bucket=bucket, Key=manifest_key(dataset))["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise TilerError(f"bucket {bucket!r} does not exist") from None
        raise TilerError(f"cannot read s3://{bucket}/{manifest_key(dataset)} ({describe(exc)})") from None
    except BotoCoreError as exc:
        raise TilerError(f"cannot reach S3 for s3://{bucket}/{manifest_key(dataset)} ({describe(exc)})") from None
    return Manifest.from_bytes(body)


def get_verified(client, bucket: str, dataset: str, ref: ObjectRef) -> bytes:
    """A small object's bytes, checked against the manifest's size and sha256."""
    key = dataset_prefix(dataset) + ref.key
    try:
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise TilerError(f"cannot read s3://{bucket}/{key} ({describe(exc)})") from None
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
        raise TilerError(f"s3://{bucket}/{key} does not match the manifest (size or sha256)")
    return data


def load_remote_state(client, bucket: str, manifest: Manifest) -> State:
    """The state at the manifest's generation, from the snapshot index and the diffs' changes."""
    objects = manifest.objects()
    snapshot = manifest.snapshot
    doc = load_gzip_json(get_verified(client, bucket, manifest.dataset, objects[snapshot.index]), snapshot.index)
    state = State.from_json(doc)
    for step in manifest.diffs:
        if step.generation <= state.generation:
            continue
        data = get_verified(client, bucket, manifest.dataset, objects[step.index])
        state = apply_changes(state, Changes.from_json(load_gzip_json(data, step.index)))
    return state


class _Bytes(BaseSubscriber):
    def __init__(self, report: Callable[[int], None]):
        self.report = report

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        self.report(bytes_transferred)


@dataclass(frozen=True)
class Upload:
    path: Path
    key: str      # full bucket key
    size: int
    sha256: str


def _already_there(client, bucket: str, upload: Upload) -> bool:
    try:
        head = client.head_object(Bucket=bucket, Key=upload.key)
    except ClientError:
        return False
    return head.get("ContentLength") == upload.size and head.get("Metadata", {}).get("sha256") == upload.sha256


def upload_files(client, bucket: str, uploads: Iterable[Upload], on_bytes: Callable[[int], None]) -> int:
    """Upload concurrently (multipart for large files); skip objects already there with the same sha256.

    Returns the number of bytes sent. Raises TilerError if any upload fails.
    """
    uploads = list(uploads)
    pending = [u for u in uploads if not _already_there(client, bucket, u)]
    with create_transfer_manager(client, TRANSFER) as manager:
        futures = [manager.upload(str(u.path), bucket, u.key, extra_args={"Metadata": {"sha256": u.sha256}},
                                  subscribers=[_Bytes(on_bytes)]) for u in pending]
        try:
            for future in futures:
                future.result()
        except (ClientError, BotoCoreError, OSError) as exc:
            raise TilerError(f"upload to s3://{bucket} failed ({describe(exc)})") from None
    log.info("uploaded objects=%d skipped=%d", len(pending), len(uploads) - len(pending))
    return sum(u.size for u in pending)


def put_bytes(client, bucket: str, key: str, data: bytes, content_type: str = "application/json") -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                          Metadata={"sha256": hashlib.sha256(data).hexdigest()})
    except (ClientError, BotoCoreError) as exc:
        raise TilerError(f"cannot write s3://{bucket}/{key} ({describe(exc)})") from None


def check_present(client, bucket: str, dataset: str, refs: Iterable[ObjectRef]) -> None:
    """Raise TilerError unless every object exists with its listed size (before a manifest names it)."""
    for ref in refs:
        key = dataset_prefix(dataset) + ref.key
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise TilerError(f"s3://{bucket}/{key} is missing after upload ({describe(exc)})") from None
        if head.get("ContentLength") != ref.size:
            raise TilerError(f"s3://{bucket}/{key} has {head.get('ContentLength')} bytes, expected {ref.size}")


def delete_prefix(client, bucket: str, prefix: str) -> int:
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted
