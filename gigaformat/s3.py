"""How every part talks to S3: clients from AWS's own chain, one line for any failure, and the reads of a
published dataset (manifest, verified small objects, the state at the manifest's generation).

Endpoint, credentials and region come from AWS's chain (``AWS_ENDPOINT_URL_S3`` for a local server). Every
client skips botocore's per-request CRC32: integrity is end to end, the manifest's sha256 checked by every
reader, and that CRC32 in Python halves throughput (docs/pitfalls.md).
"""

from __future__ import annotations

import hashlib

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from gigaformat.errors import (
    AccessDenied,
    MalformedDocument,
    Mismatch,
    NoCredentials,
    NoSuchBucket,
    StorageError,
    Unreachable,
)
from gigaformat.manifest import Manifest, ObjectRef, dataset_prefix, manifest_key
from gigaformat.state import State, rebuild_state

MISSING_CODES = ("NoSuchKey", "404", "NotFound")
_DENIED_CODES = ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled")


def make_client(*, attempts: int = 8, connect_timeout: float = 5, read_timeout: float = 60,
                max_connections: int = 32, endpoint_url: str | None = None, region: str | None = None,
                keepalive: bool = False, transfer_methods: bool = True, operations: tuple[str, ...] = ()):
    """An S3 client: retries with backoff and jitter (``attempts`` calls in all), the timeouts given, and
    ``endpoint_url``/``region`` only where the AWS chain is not to decide (a node's user-data).

    ``transfer_methods=False``: a plain botocore client, without boto3's ``upload_file``/``download_file``
    (s3transfer): importing boto3 and s3transfer is a tenth of a second a short-lived process can skip.
    ``operations`` (with ``transfer_methods=False``), e.g. ``("GetObject", "PutObject")``: a client that knows
    only these, built from botocore's data cut to them (``gigaformat.s3data``: 20 ms instead of 70-90)."""
    config = Config(retries={"max_attempts": attempts, "mode": "standard"}, max_pool_connections=max_connections,
                    connect_timeout=connect_timeout, read_timeout=read_timeout, tcp_keepalive=keepalive,
                    request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    s3={"addressing_style": "path"} if endpoint_url else None)
    if transfer_methods:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                               config=config)
    import botocore.session

    if operations:
        from gigaformat.s3data import discard_folder, s3_loader

        session = botocore.session.get_session()
        loader = s3_loader(session, operations)
        if loader is not None:
            session.register_component("data_loader", loader)
            try:
                return session.create_client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                             config=config)
            except (ValueError, OSError, KeyError) as exc:  # a damaged cut folder: dropped, botocore's own used
                discard_folder(operations, exc)
    return botocore.session.get_session().create_client("s3", endpoint_url=endpoint_url or None,
                                                        region_name=region or None, config=config)


def error_code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def is_missing(exc: Exception) -> bool:
    """True if ``exc`` says the key does not exist."""
    return error_code(exc) in MISSING_CODES


def describe(exc: Exception) -> str:
    """One line for an S3 failure: the service's code and message, or the exception."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip().rstrip(":")
    return f"{exc.__class__.__name__}: {exc}"


def storage_error(exc: Exception, doing: str, bucket: str) -> StorageError:
    """The StorageError for ``exc`` (raised while ``doing``, e.g. "cannot read s3://b/k"), naming the cause
    and what to do about it."""
    if isinstance(exc, NoCredentialsError):
        return NoCredentials(f"{doing}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run with an instance role")
    if isinstance(exc, EndpointConnectionError):
        return Unreachable(f"{doing}: cannot connect to {exc.kwargs.get('endpoint_url', 'S3')}; is the S3 server "
                           "running and AWS_ENDPOINT_URL_S3 right?")
    code = error_code(exc)
    if code == "NoSuchBucket":
        return NoSuchBucket(f"{doing}: bucket {bucket!r} does not exist; create it first "
                            f"(aws s3 mb s3://{bucket}) or check --bucket and the endpoint")
    if code in _DENIED_CODES:
        return AccessDenied(f"{doing}: access denied ({describe(exc)}); check the credentials and the "
                            f"bucket's policy for {bucket!r}")
    if isinstance(exc, BotoCoreError):
        return Unreachable(f"{doing}: cannot reach S3 ({describe(exc)})")
    return StorageError(f"{doing} ({describe(exc)})")


def read_manifest(client, bucket: str, dataset: str) -> Manifest | None:
    """The dataset's manifest, or None if the dataset was never published."""
    key = manifest_key(dataset)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise storage_error(exc, f"cannot read s3://{bucket}/{key}", bucket) from None
    except BotoCoreError as exc:
        raise storage_error(exc, f"cannot read s3://{bucket}/{key}", bucket) from None
    return Manifest.from_bytes(body)


def get_verified(client, bucket: str, dataset: str, ref: ObjectRef) -> bytes:
    """A small object's bytes, checked against the manifest's size and sha256 (Mismatch otherwise)."""
    key = dataset_prefix(dataset) + ref.key
    try:
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, f"cannot read s3://{bucket}/{key}", bucket) from None
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
        raise Mismatch(f"s3://{bucket}/{key} does not match the manifest (size or sha256)")
    return data


def load_remote_state(client, bucket: str, manifest: Manifest) -> State:
    """The state at the manifest's generation: the snapshot's state, then the diffs after it."""
    objects = manifest.objects()
    steps = [manifest.snapshot] + [d for d in manifest.diffs if d.generation > manifest.snapshot.generation]
    return rebuild_state(steps, lambda key: get_verified(client, bucket, manifest.dataset, _listed(objects, key)))


def _listed(objects: dict[str, ObjectRef], key: str) -> ObjectRef:
    if key not in objects:
        raise MalformedDocument(f"manifest does not list {key}, which its steps read")
    return objects[key]
