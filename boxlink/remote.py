"""boxlink's side of S3: the shared client, request counts, and manifest polls by conditional GET."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from boxlink.errors import BoxlinkError
from gigaformat.errors import FormatError
from gigaformat.manifest import Manifest, manifest_key
from gigaformat.s3 import error_code, is_missing, make_client, storage_error

log = logging.getLogger(__name__)

OPERATIONS = ("GetObject", "PutObject")  # what boxlink asks of S3: objects and manifests down, logs up


class RequestCounter:
    """Counts the S3 API calls a client makes, by operation (retries by botocore not included)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client) -> None:
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model, **kwargs) -> None:
        with self._lock:
            self._counts[model.name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def connect(concurrency: int) -> tuple[object, RequestCounter]:
    """One S3 client for all threads (connection pool sized for ``concurrency`` GETs) and its counter.

    Endpoint and credentials come from AWS's chain (``gigaformat.s3.make_client``); the retry budget is
    small (boxlink retries whole objects and whole passes itself, so a call should fail in seconds, not
    minutes, and a pass can start over as soon as S3 is back). Integrity is boxlink's own sha256 of every
    byte. A plain botocore client: boxlink makes its own ranged GETs, so boto3 and s3transfer are not
    imported (a shorter start for ``boxlink sync``); and a client of the S3 operations boxlink calls only,
    built from botocore's data cut to them (``gigaformat.s3data``).
    """
    client = make_client(attempts=4, connect_timeout=3, read_timeout=20, max_connections=concurrency + 8,
                         keepalive=True, transfer_methods=False, operations=OPERATIONS)
    counter = RequestCounter()
    counter.attach(client)
    return client, counter


@dataclass(frozen=True)
class Poll:
    manifest: Manifest | None  # None: the dataset was never published
    changed: bool  # False when S3 answered 304 Not Modified (one cheap request)


class ManifestPoller:
    """Reads datasets' manifests, sending the last ETag so an unchanged manifest costs a 304."""

    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket
        self._seen: dict[str, tuple[str, Manifest]] = {}  # dataset -> (etag, manifest)

    def poll(self, dataset: str) -> Poll:
        """The dataset's manifest; raise BoxlinkError if S3 cannot be read or the manifest is malformed."""
        key = manifest_key(dataset)
        request = {"Bucket": self.bucket, "Key": key}
        seen = self._seen.get(dataset)
        if seen:
            request["IfNoneMatch"] = seen[0]
        try:
            response = self.client.get_object(**request)
            body = response["Body"].read()
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if seen and (error_code(exc) in ("304", "NotModified") or status == 304):
                return Poll(seen[1], False)
            if is_missing(exc):
                self._seen.pop(dataset, None)
                return Poll(None, True)
            raise BoxlinkError(str(storage_error(exc, f"cannot read s3://{self.bucket}/{key}", self.bucket))) \
                from None
        except BotoCoreError as exc:
            raise BoxlinkError(str(storage_error(exc, f"cannot read s3://{self.bucket}/{key}", self.bucket))) \
                from None
        try:
            manifest = Manifest.from_bytes(body)
        except FormatError as exc:
            raise BoxlinkError(f"s3://{self.bucket}/{key}: {exc}") from None
        etag = response.get("ETag")
        if etag:
            self._seen[dataset] = (etag, manifest)
        log.info("manifest dataset=%s generation=%d etag=%s", dataset, manifest.generation, etag)
        return Poll(manifest, True)
