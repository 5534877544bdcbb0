"""Parallel, verified downloads: S3 objects -> files whose size and sha256 match the manifest.

Many objects and the chunks of large objects come down in parallel, ``policy.concurrency`` ranged GETs
at a time over one shared client. Each chunk is streamed straight into its place in ``<dest>.part``
(never a whole object in memory), 4 MiB at a time (``_PartFile``: through the page cache, or past it with
``policy.direct_writes``), and what goes through the page cache is handed to the disk every 8 MB as it
lands (``sync_file_range``, so writing to disk runs alongside the download and the fsync waits only for
the tail). The sha256 is computed in order as the chunks land (the first chunk as it streams in, the others
read back from the file: an object of one chunk, every pack by default, is never read back), so
verification runs alongside the download.
Only an object whose size and sha256 match is fsynced and renamed to ``dest``; a mismatch or a network
failure deletes the part and fetches the whole object again (bounded attempts, exponential backoff with
jitter).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import http.client
import logging
import mmap
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError

from boxlink.errors import BoxlinkError, Cancelled, disk_error
from boxlink.settings import TransferPolicy
from gigaformat.s3 import describe

log = logging.getLogger(__name__)

PIECE = 4 << 20  # bytes a GET reads before it writes them (and hashes them). A 2.9-GB sync, 3 interleaved
# rounds: 590 MB/s with 4 MiB, 540 with 1 MiB (O_DIRECT writes; 2 shared CPUs, Linux 6.18 guest, 2026-12-03)
WRITE_PIECE = 64 << 10  # bytes per pwrite through the page cache (the fallback of _PartFile). Larger writes fill
# the page cache with larger folios, which cost far more system time per byte here: a 1.2-GB sync, 6 interleaved
# rounds, took 0.9 s of it with 64-KiB writes and 3.1 s with 1-MiB ones (s5cmd, 32-KiB writes: 1.1 s)
# (Linux 6.18 guest, ext4, 2026-12-03)
DIRECT_ALIGN = 4096  # O_DIRECT writes start, end and sit in memory on this boundary (a page: >= any disk's block)
WRITEBACK_STEP = 8 << 20  # a GET hands what it wrote to the disk every this many bytes (start_writeback)
BACKGROUND_NICE = 10  # how much nicer a background transfer's threads are (nice(1)'s default). The lazy start of a
# 2.9-GB wall, 4 launches each, interleaved: first correct tile 3.8-4.5 s (4.7, 4.3, 4.1, 4.1 without), full 6.2-7.0 s
HASH_READ = 4 << 20  # bytes per read when a file is hashed back from disk
PART_SUFFIX = ".part"
_PERMANENT = {"NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "403", "InvalidAccessKeyId",
              "SignatureDoesNotMatch"}
_NETWORK_ERRORS = (BotoCoreError, urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError,
                   TimeoutError)


@dataclass(frozen=True)
class Job:
    """Fetch s3://bucket/``key`` into ``dest``; it must have ``size`` bytes and this ``sha256``."""

    key: str
    dest: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class FetchReport:
    objects: int
    bytes: int  # bytes received, failed attempts included
    seconds: float
    retries: int

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / max(self.seconds, 1e-9)


class _Retry(Exception):
    """This attempt at an object failed in a way another attempt may fix."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a local file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(HASH_READ):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class Downloader:
    """Fetch many objects from one bucket with one shared client, verifying each.

    ``stop`` (set on SIGTERM) makes every transfer abandon at its next piece, delete its part and raise
    ``Cancelled``. ``on_bytes`` is called with each piece's length (progress bars, rates). ``background``:
    the transfer threads run at a lower CPU priority (``BACKGROUND_NICE``), so that what the machine is there
    for (the render server, serving lazily while the fill runs) comes first.
    """

    def __init__(self, client, bucket: str, policy: TransferPolicy, stop: threading.Event | None = None,
                 on_bytes: Callable[[int], None] = lambda n: None, background: bool = False):
        self.client = client
        self.bucket = bucket
        self.policy = policy
        self.stop = stop or threading.Event()
        self.on_bytes = on_bytes
        self.background = background
        self._lock = threading.Lock()
        self._received = 0
        self._retries = 0

    def fetch(self, jobs: Sequence[Job], on_verified: Callable[[Job, str], None]) -> FetchReport:
        """Fetch every job; call ``on_verified(job, sha256)`` as soon as each is in place.

        Objects that succeed stay in place even if others fail. Raises the first failure (a
        ``BoxlinkError``) once all transfers have settled; ``Cancelled`` if ``stop`` was set.
        """
        started = time.monotonic()
        self._received, self._retries = 0, 0
        done, failure = 0, None
        width = max(1, self.policy.concurrency)
        start, niceness = None, ()
        if self.background:
            with contextlib.suppress(OSError, AttributeError):
                start, niceness = _lower_priority, (min(19, _thread_niceness() + BACKGROUND_NICE),)
        with ThreadPoolExecutor(width, "boxlink-get", start, niceness) as gets, \
                ThreadPoolExecutor(width, "boxlink-obj", start, niceness) as objs:
            futures = {objs.submit(self._fetch_object, job, gets): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    digest = future.result()
                except BoxlinkError as exc:
                    # Report a real failure rather than the cancellations it may have caused.
                    if failure is None or (isinstance(failure, Cancelled) and not isinstance(exc, Cancelled)):
                        failure = exc
                    continue
                on_verified(job, digest)
                done += 1
        report = FetchReport(done, self._received, time.monotonic() - started, self._retries)
        if failure is not None:
            raise failure
        return report

    # -- one object ----------------------------------------------------------------------------
    def _fetch_object(self, job: Job, gets: ThreadPoolExecutor) -> str:
        part = part_path(job.dest)
        attempts = max(1, self.policy.attempts)
        for attempt in range(1, attempts + 1):
            try:
                digest = self._fetch_once(job, part, gets)
            except _Retry as exc:
                part.unlink(missing_ok=True)
                if attempt == attempts:
                    raise BoxlinkError(f"s3://{self.bucket}/{job.key}: {exc} (after {attempts} attempts); "
                                       f"not applied") from None
                delay = self.policy.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.warning("fetch retry key=%s attempt=%d/%d wait=%.2f reason=%r", job.key, attempt, attempts,
                            delay, str(exc))
                with self._lock:
                    self._retries += 1
                if self.stop.wait(delay):
                    raise Cancelled("stopped") from None
                continue
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            try:
                os.replace(part, job.dest)
            except OSError as exc:
                part.unlink(missing_ok=True)
                raise disk_error(exc, job.dest) from None
            return digest
        raise AssertionError("unreachable")

    def _fetch_once(self, job: Job, part: Path, gets: ThreadPoolExecutor) -> str:
        """Download ``job`` into ``part``; return its sha256, or raise ``_Retry`` on a mismatch."""
        part.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise disk_error(exc, part) from None
        abort = threading.Event()
        out = _PartFile(part, fd, direct=self.policy.direct_writes and self.policy.chunk_bytes % DIRECT_ALIGN == 0)
        try:
            _preallocate(fd, part, job.size)
            ranges = _ranges(job.size, self.policy.chunk_bytes)
            if len(ranges) == 1:
                digest = hashlib.sha256()
                gets.submit(self._get, job, ranges[0], out, abort, digest).result()
            else:
                # The first chunk is hashed as it streams in (it is in order); the later ones are hashed
                # from the page cache behind it, in order, as they land.
                digest = hashlib.sha256()
                futures = [gets.submit(self._get, job, r, out, abort, digest if n == 0 else None)
                           for n, r in enumerate(ranges)]
                try:
                    self._hash_in_order(fd, part, ranges, futures, digest)
                finally:
                    abort.set()  # on failure: stop the other chunks, and wait for them before closing fd
                    for future in futures:
                        future.cancel()
                    wait(futures)
            found = digest.hexdigest()
            if found != job.sha256:
                raise _Retry(f"sha256 mismatch: got {found[:16]}…, manifest says {job.sha256[:16]}…")
            _disk_call(os.fsync, part, fd)  # verified bytes are durable before they are named
        finally:
            out.close_direct()
            os.close(fd)
        return found

    def _hash_in_order(self, fd: int, part: Path, ranges: list[tuple[int, int]], futures: list[Future],
                       digest) -> None:
        """Feed ``digest`` every chunk but the first (hashed as it streamed), in order, from ``part``."""
        futures[0].result()  # raises the chunk's failure
        buffer = memoryview(bytearray(HASH_READ))
        for (start, end), future in zip(ranges[1:], futures[1:], strict=True):
            future.result()
            pos = start
            while pos < end:
                count = _disk_call(os.preadv, part, fd, [buffer[:min(len(buffer), end - pos)]], pos)
                if not count:
                    raise _Retry(f"chunk at {pos} vanished from {part}")
                digest.update(buffer[:count])
                pos += count

    # -- one ranged GET --------------------------------------------------------------------------
    def _get(self, job: Job, span: tuple[int, int], out: _PartFile, abort: threading.Event, digest) -> None:
        start, end = span
        request = {"Bucket": self.bucket, "Key": job.key}
        if (start, end) != (0, job.size):
            request["Range"] = f"bytes={start}-{end - 1}"
        pos = start
        handed = start  # bytes before this are handed to the disk (start_writeback)
        body = None
        # One buffer per GET: no allocation (nor page faults) per piece; page-aligned, as O_DIRECT needs.
        view = memoryview(mmap.mmap(-1, PIECE))  # unmapped when the last slice of it goes
        try:
            response = self.client.get_object(**request)
            body = response["Body"]
            total = _object_size(response)
            if total != job.size:
                raise _Retry(f"object has {total} bytes, the manifest says {job.size}")
            read_into = _reader(body)
            ended = False
            while not ended:
                filled = 0  # a whole piece is read before it is written: O_DIRECT writes whole blocks
                while filled < PIECE:
                    if self.stop.is_set():
                        raise Cancelled("stopped")
                    if abort.is_set():
                        return
                    count = read_into(view[filled:])
                    if not count:
                        ended = True
                        break
                    if pos + filled + count > end:
                        raise _Retry(f"more bytes than the manifest's {job.size}")
                    filled += count
                    with self._lock:
                        self._received += count
                    self.on_bytes(count)
                if not filled:
                    break
                data = view[:filled]
                out.write(data, pos)
                if digest is not None:
                    digest.update(data)
                pos += filled
                if pos - handed >= WRITEBACK_STEP:
                    start_writeback(out.fd, handed, pos - handed)
                    handed = pos
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _PERMANENT:
                raise BoxlinkError(f"s3://{self.bucket}/{job.key}: {describe(exc)}") from None
            if code in ("InvalidRange", "416"):
                raise _Retry(f"object is smaller than the manifest's {job.size} bytes") from None
            raise _Retry(describe(exc)) from None
        except _NETWORK_ERRORS as exc:
            raise _Retry(describe(exc)) from None
        finally:
            if body is not None:
                body.close()
        if pos != end:
            raise _Retry(f"short read: {pos - start} of {end - start} bytes at {start}")
        start_writeback(out.fd, handed, end - handed)


class _PartFile:
    """Where an object's GETs write: ``part``, through the page cache, or with ``direct`` past it (O_DIRECT)
    where the file system allows.

    Written through the page cache, every byte costs the kernel a copy into a freshly allocated page, and on a
    VM whose free memory goes back to the host (virtio-balloon free page reporting), a fault of that page
    back in: 45 % of boxlink's samples were in that write path (perf, a 2.9-GB sync, 2026-12-03). O_DIRECT
    hands the buffer to the disk instead. Whole aligned blocks go that way; the tail of an object that does
    not end on a block (and everything, where the file system refuses O_DIRECT) is written through the cache.
    Readers lose nothing: the kernel drops any cached page an O_DIRECT write covers.
    """

    def __init__(self, part: Path, fd: int, direct: bool):
        self.part = part
        self.fd = fd
        self._opened = _open_direct(part) if direct else None
        self.direct_fd = self._opened  # None once O_DIRECT is refused (closed in close_direct, not before:
        # another GET may be writing through it)

    def write(self, data: memoryview, pos: int) -> None:
        direct_fd = self.direct_fd
        if direct_fd is not None and pos % DIRECT_ALIGN == 0:
            aligned = len(data) - len(data) % DIRECT_ALIGN
            while aligned:
                try:
                    written = os.pwrite(direct_fd, data[:aligned], pos)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise disk_error(exc, self.part) from None
                    self.direct_fd = None  # this file system wants another alignment: the page cache, then
                    log.info("O_DIRECT refused for %s (%s); writing through the page cache", self.part, exc)
                    break
                data, pos = data[written:], pos + written
                if written % DIRECT_ALIGN:
                    break  # a short write off the boundary: the rest through the page cache
                aligned -= written
        _pwrite_all(self.fd, self.part, data, pos)

    def close_direct(self) -> None:
        if self._opened is not None:
            os.close(self._opened)
            self._opened = self.direct_fd = None


def _open_direct(part: Path) -> int | None:
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(part, os.O_WRONLY | flag)
    except OSError:
        return None  # a file system without O_DIRECT (older tmpfs): writes go through the page cache


def _thread_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # Linux: niceness is per thread


def _lower_priority(niceness: int) -> None:
    """Give this thread ``niceness`` unless it is nicer already (a thread starts with its creator's); nothing
    where that is refused."""
    with contextlib.suppress(OSError, AttributeError):
        if _thread_niceness() < niceness:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def _reader(body) -> Callable[[memoryview], int]:
    """``readinto`` of a GET's body, as close to the socket as it is safe to go.

    botocore's ``StreamingBody`` wraps urllib3's response, whose ``read`` and ``readinto`` copy every piece
    through buffers of their own (and allocate a new ``bytes`` each time); underneath is the standard
    library's ``http.client.HTTPResponse``, whose ``readinto`` reads the socket straight into our buffer and
    stops at the Content-Length. The size is checked by the caller either way (``pos != end``).
    """
    raw = getattr(body, "_raw_stream", None)
    response = getattr(raw, "_fp", None)
    if isinstance(response, http.client.HTTPResponse) and not getattr(raw, "chunked", False) \
            and not raw.headers.get("Content-Encoding"):
        return response.readinto
    return body.readinto if hasattr(body, "readinto") else lambda view: _copy_into(body.read(len(view)), view)


def _copy_into(data: bytes, view: memoryview) -> int:
    view[:len(data)] = data
    return len(data)


def _ranges(size: int, chunk: int) -> list[tuple[int, int]]:
    if size <= chunk:
        return [(0, size)]
    return [(start, min(start + chunk, size)) for start in range(0, size, chunk)]


def _load_sync_file_range():
    try:
        # the C library this process runs on, as tiler.packspace finds it: ctypes.util's import alone was
        # 26-32 ms of boxlink sync's start-up
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing this range to disk now (Linux ``sync_file_range``; no wait).

    The fsync before an object is named then waits only for the tail, so writing to disk overlaps the
    download instead of following it. A no-op where the call does not exist.
    """
    if _SYNC_FILE_RANGE is not None and length > 0:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _object_size(response: dict) -> int:
    """The whole object's size from a (ranged) GET response."""
    content_range = response.get("ContentRange")  # "bytes 0-99/1234"
    if content_range and "/" in content_range:
        return int(content_range.rsplit("/", 1)[1])
    return int(response.get("ContentLength", -1))


def _preallocate(fd: int, part: Path, size: int) -> None:
    """Reserve the space up front, so a full disk shows up before any GET."""
    if size <= 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return  # a file system without fallocate: writes will report a full disk instead
        raise disk_error(exc, part) from None


def _pwrite_all(fd: int, part: Path, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        written = _disk_call(os.pwrite, part, fd, view[:WRITE_PIECE], pos)
        view = view[written:]
        pos += written


def _disk_call(func, path: Path, *args):
    try:
        return func(*args)
    except OSError as exc:
        raise disk_error(exc, path) from None
