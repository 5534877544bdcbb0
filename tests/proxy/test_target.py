"""URL checks: traversal and absurd URLs are refused before anything else looks at them."""

from __future__ import annotations

import pytest

from proxy.errors import ProxyError
from proxy.responses import status_of
from proxy.target import check_target, is_versioned


@pytest.mark.parametrize("path", [
    b"/tiles/../etc/passwd", b"/tiles/covers/..", b"/tiles/./covers/0/0/0.jpg", b"/tiles//covers",
    b"/tiles/%2e%2e/x", b"/tiles/covers/0/0/0.jpg%00", b"/tiles/covers\\..\\x", b"/tiles/a\x00b", b"tiles/x",
    b"/tiles/a b", b"/tiles/\xc3\xa9", b"",
])
def test_bad_paths_are_400(path):
    with pytest.raises(ProxyError) as caught:
        check_target(path, b"")
    assert status_of(caught.value) == 400


def test_absurd_lengths_are_414():
    with pytest.raises(ProxyError) as caught:
        check_target(b"/tiles/" + b"a" * 300, b"")
    assert status_of(caught.value) == 414
    with pytest.raises(ProxyError) as caught:
        check_target(b"/tiles/a.jpg", b"v=" + b"1" * 200)
    assert status_of(caught.value) == 414


@pytest.mark.parametrize("query", [b"v=%2e", b"v=1\x00", b"v=1#x", b"v=<script>", b"v=1\\"])
def test_bad_queries_are_400(query):
    with pytest.raises(ProxyError):
        check_target(b"/tiles/covers/0/0/0.jpg", query)


def test_good_targets_pass_unchanged():
    assert check_target(b"/tiles/covers/3/1/2.jpg", b"v=7") == b"/tiles/covers/3/1/2.jpg?v=7"
    assert check_target(b"/tiles/covers_files/12/3_4.jpg", b"") == b"/tiles/covers_files/12/3_4.jpg"
    assert check_target(b"/", b"") == b"/"
    assert check_target(b"/tiles/covers.dzi", b"") == b"/tiles/covers.dzi"
    assert is_versioned(b"v=7") and is_versioned(b"x=1&v=2") and not is_versioned(b"") and not is_versioned(b"vv=1")
