"""Tiles fetched from S3 while boxlink still fills the disk (a lazy start, ``synch.lazy``).

A tile whose pack is not on the node yet is read with one ranged GET of exactly its bytes and checked
against the 16-byte sha256 prefix in the tile index before it is used: a wrong byte is never served. Reads
of the same tile at the same time share one GET. A failure (S3 down, a corrupt object) is ``NotReady``:
503 with Retry-After, so a client or the proxy tries again, or another node.

boto3 is imported when a lazy dataset is opened, not with this module: a render server that serves only
replicated datasets never pays its ~0.2 s import in each worker's start.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from gigaformat.tiles import TileEntry, tile_digest
from tiler.errors import NotReady

log = logging.getLogger(__name__)


def import_client_modules() -> None:
    """Import what ``RemoteTiles``' client is made of (botocore and the cut data's loader: ~0.13 s of CPU,
    most of a lazy open): ``tiler serve``'s parent does it once, before it forks the workers."""
    import botocore.client  # noqa: F401
    import botocore.session  # noqa: F401

    import gigaformat.s3  # noqa: F401
    import gigaformat.s3data  # noqa: F401


_client = None
_client_lock = threading.Lock()


def shared_client():
    """This process's client for lazy reads, built at its first call (every generation a worker opens lazily
    reads through it). A botocore client is thread-safe; built in a worker, after the fork."""
    global _client
    with _client_lock:
        if _client is None:
            from gigaformat.s3 import make_client

            _client = make_client(attempts=2, connect_timeout=2, read_timeout=5, max_connections=16,
                                  transfer_methods=False, operations=("GetObject",))  # no boto3: built ~0.1 s sooner
        return _client


def build_client_ahead() -> None:
    """Build ``shared_client()`` in a thread of its own: a worker waiting for its first data does it meanwhile
    (0.08-0.12 s of a lazy open, more on a node's busy cores), and its lazy open finds it built."""
    threading.Thread(target=shared_client, name="lazy-client", daemon=True).start()


class RemoteTiles:
    """Ranged reads of ``s3://bucket/<prefix><pack key>``, verified, with concurrent reads coalesced."""

    def __init__(self, bucket: str, prefix: str, client=None):
        self.bucket = bucket
        self.prefix = prefix
        self.client = client if client is not None else shared_client()
        self.fetched = 0
        self._flights: dict[tuple[str, int], Future] = {}
        self._lock = threading.Lock()

    def read(self, pack: str, entry: TileEntry) -> bytes:
        key = (pack, entry.offset)
        with self._lock:
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                flight = self._flights[key] = Future()
        if owner:
            try:
                flight.set_result(self._get(pack, entry))
            except BaseException as exc:
                flight.set_exception(exc)
            finally:
                with self._lock:
                    self._flights.pop(key, None)
        return flight.result()

    def _get(self, pack: str, entry: TileEntry) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        from gigaformat.s3 import describe

        name = self.prefix + pack
        for attempt in (1, 2):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=name,
                                              Range=f"bytes={entry.offset}-{entry.offset + entry.length - 1}")["Body"]
                data = body.read()
            except (ClientError, BotoCoreError) as exc:
                log.warning("lazy fetch failed key=s3://%s/%s error=%s", self.bucket, name, describe(exc))
                raise NotReady(f"tile not replicated yet and S3 cannot be read ({describe(exc)}); retry shortly") \
                    from None
            if tile_digest(data) == entry.digest:
                self.fetched += 1
                return data
            log.warning("lazy fetch mismatch key=s3://%s/%s offset=%d attempt=%d", self.bucket, name, entry.offset,
                        attempt)
        raise NotReady(f"tile bytes from s3://{self.bucket}/{name} do not match the index; retry shortly")
