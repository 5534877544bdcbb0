"""The publisher's side of S3: concurrent uploads of a step's objects, small documents, prefix deletion.

Clients, errors and the reads of a published dataset are ``gigaformat.s3``'s. Transfer policy is one
``TransferConfig``; retries are the client's configuration.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber

from gigaformat.errors import Mismatch, StorageError
from gigaformat.manifest import ObjectRef, dataset_prefix
from gigaformat.s3 import storage_error

log = logging.getLogger(__name__)

MB = 1 << 20
# Measured on 2 cores: 8 MB parts x 8 threads beat 16 x 16 (the GIL; docs/pitfalls.md).
TRANSFER = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=8,
                          use_threads=True)


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

    Returns the number of bytes sent. Raises StorageError if any upload fails.
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
            raise storage_error(exc, f"upload to s3://{bucket} failed", bucket) from None
    log.info("uploaded objects=%d skipped=%d", len(pending), len(uploads) - len(pending))
    return sum(u.size for u in pending)


def put_bytes(client, bucket: str, key: str, data: bytes, content_type: str = "application/json") -> None:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                          Metadata={"sha256": hashlib.sha256(data).hexdigest()})
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, f"cannot write s3://{bucket}/{key}", bucket) from None


def check_present(client, bucket: str, dataset: str, refs: Iterable[ObjectRef]) -> None:
    """Raise StorageError unless every object exists with its listed size (before a manifest names it)."""
    for ref in refs:
        key = dataset_prefix(dataset) + ref.key
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, f"s3://{bucket}/{key} is missing after upload", bucket) from None
        if head.get("ContentLength") != ref.size:
            raise Mismatch(f"s3://{bucket}/{key} has {head.get('ContentLength')} bytes, expected {ref.size}")


def delete_prefix(client, bucket: str, prefix: str, keep: Collection[str] = ()) -> int:
    """Delete the objects under ``prefix`` but those whose full keys are in ``keep``; return how many.
    StorageError if S3 refuses any of them."""
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if o["Key"] not in keep]
        if keys:
            errors = client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True}).get("Errors", [])
            if errors:  # S3 answers 200 and lists the objects it could not delete
                first = errors[0]
                raise StorageError(f"cannot delete s3://{bucket}/{first.get('Key')}: {first.get('Code')} "
                                   f"({first.get('Message', '')}; {len(errors)} of {len(keys)} objects not deleted)")
            deleted += len(keys)
    return deleted


class PackUploader:
    """Upload packs as the build completes them, so staging disk holds at most ``window`` packs in flight:
    a pack already in S3 with the same sha256 is skipped (a re-run after a crash), and each local file is
    deleted once it is up. Call it with each ``PackFile``; ``finish()`` waits for the rest."""

    def __init__(self, client, bucket: str, dataset: str, on_bytes: Callable[[int], None] = lambda n: None,
                 window: int = 2):
        self.client = client
        self.bucket = bucket
        self.dataset = dataset
        self.on_bytes = on_bytes
        self.window = window
        self.sent = 0
        self.skipped = 0
        self._manager = create_transfer_manager(client, TRANSFER)
        self._pending: list[tuple[Upload, object]] = []

    def __call__(self, pack) -> None:
        upload = Upload(pack.path, dataset_prefix(self.dataset) + pack.key, pack.size, pack.sha256)
        if _already_there(self.client, self.bucket, upload):
            self.skipped += 1
            upload.path.unlink(missing_ok=True)
            return
        future = self._manager.upload(str(upload.path), self.bucket, upload.key,
                                      extra_args={"Metadata": {"sha256": upload.sha256}},
                                      subscribers=[_Bytes(self.on_bytes)])
        self._pending.append((upload, future))
        while len(self._pending) > self.window:
            self._settle(*self._pending.pop(0))

    def _settle(self, upload: Upload, future) -> None:
        try:
            future.result()
        except (ClientError, BotoCoreError, OSError) as exc:
            raise storage_error(exc, f"upload of {upload.path.name} to s3://{self.bucket}/{upload.key} failed",
                                self.bucket) from None
        self.sent += upload.size
        upload.path.unlink(missing_ok=True)

    def finish(self) -> int:
        """Wait for every upload; return the bytes sent. StorageError if any failed."""
        try:
            while self._pending:
                self._settle(*self._pending.pop(0))
        finally:
            self._manager.shutdown()
        log.info("packs uploaded bytes=%d skipped=%d", self.sent, self.skipped)
        return self.sent

    def abandon(self) -> None:
        self._manager.shutdown(cancel=True)
