"""boxlink.transfer against a real SeaweedFS: objects of several pieces and an unaligned tail, written through the
page cache, or (``direct_writes``) past it (O_DIRECT) where the file system allows and through it where the
kernel refuses."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import threading
from pathlib import Path

import pytest

from boxlink.settings import TransferPolicy
from boxlink.transfer import BACKGROUND_NICE, DIRECT_ALIGN, PIECE, Downloader, Job, _open_direct, _PartFile

SIZE = 2 * PIECE + 12_345  # three pieces, the last ending off a block boundary


def _resident_pages(path: Path) -> list[bool]:
    """Which pages of ``path`` are in the page cache (mincore over a private mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        vector = (ctypes.c_ubyte * pages)()
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return [bool(v & 1) for v in vector]


def _direct_allowed(folder: Path) -> bool:
    probe = folder / "probe"
    probe.write_bytes(b"")
    fd = _open_direct(probe)
    if fd is not None:
        os.close(fd)
    probe.unlink()
    return fd is not None


def _fetch(s3_bucket, tmp_path: Path, data: bytes, chunk_bytes: int, direct_writes: bool | None = None) -> Path:
    """Fetch ``data`` as one object; ``direct_writes`` None: the policy's default."""
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="obj", Body=data)
    dest = tmp_path / "out" / "obj"
    job = Job("obj", dest, len(data), hashlib.sha256(data).hexdigest())
    verified = []
    policy = TransferPolicy(concurrency=4, chunk_bytes=chunk_bytes, attempts=2, backoff_seconds=0.01,
                            **({} if direct_writes is None else {"direct_writes": direct_writes}))
    report = Downloader(s3_bucket.client, s3_bucket.name, policy).fetch([job], lambda j, d: verified.append(d))
    assert report.objects == 1 and verified == [job.sha256]
    return dest


@pytest.mark.parametrize("direct_writes", [False, True], ids=["page-cache", "o-direct"])
@pytest.mark.parametrize("chunk_bytes", [PIECE, 64 << 20], ids=["three-chunks", "one-chunk"])
def test_an_unaligned_object_of_several_pieces_arrives_whole(s3_bucket, tmp_path, chunk_bytes, direct_writes):
    data = os.urandom(SIZE)
    dest = _fetch(s3_bucket, tmp_path, data, chunk_bytes, direct_writes)
    assert dest.read_bytes() == data
    assert not dest.with_name("obj.part").exists()


def test_by_default_what_was_fetched_stays_in_the_page_cache(s3_bucket, tmp_path):
    dest = _fetch(s3_bucket, tmp_path, os.urandom(SIZE), 64 << 20)
    assert all(_resident_pages(dest)), "pages of a fetched object were not cached"


def test_with_direct_writes_an_object_of_one_chunk_is_written_past_the_page_cache(s3_bucket, tmp_path):
    if not _direct_allowed(tmp_path):
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    dest = _fetch(s3_bucket, tmp_path, os.urandom(SIZE), 64 << 20, direct_writes=True)
    resident = _resident_pages(dest)
    whole_blocks = SIZE // DIRECT_ALIGN * DIRECT_ALIGN // mmap.PAGESIZE
    # The tail (off the block boundary) went through the page cache; nothing before it did.
    assert not any(resident[:whole_blocks]), f"{sum(resident[:whole_blocks])} of {whole_blocks} pages cached"


def test_a_buffer_the_kernel_refuses_for_o_direct_is_written_through_the_page_cache(tmp_path):
    part = tmp_path / "obj.part"
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        out = _PartFile(part, fd, direct=True)
        if out.direct_fd is None:
            pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
        data = os.urandom(4 * DIRECT_ALIGN + 1)
        buffer = mmap.mmap(-1, len(data) + DIRECT_ALIGN)
        buffer[1:1 + len(data)] = data
        view = memoryview(buffer)
        out.write(view[1:1 + 4 * DIRECT_ALIGN], 0)  # off a page in memory: O_DIRECT says EINVAL
        assert out.direct_fd is None
        out.write(view[1 + 4 * DIRECT_ALIGN:1 + len(data)], 4 * DIRECT_ALIGN)
        view.release()
        out.close_direct()
    finally:
        os.close(fd)
    assert part.read_bytes() == data


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_a_background_fetch_runs_its_threads_at_a_lower_priority(s3_bucket, tmp_path, background):
    data = os.urandom(3 * PIECE)
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="obj", Body=data)
    job = Job("obj", tmp_path / "obj", len(data), hashlib.sha256(data).hexdigest())
    niceness = set()  # of the threads that received the bytes
    policy = TransferPolicy(concurrency=2, chunk_bytes=PIECE, attempts=1)
    downloader = Downloader(s3_bucket.client, s3_bucket.name, policy, background=background,
                            on_bytes=lambda n: niceness.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    downloader.fetch([job], lambda j, d: None)
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness == {min(19, ours + BACKGROUND_NICE) if background else ours}
    assert (tmp_path / "obj").read_bytes() == data
