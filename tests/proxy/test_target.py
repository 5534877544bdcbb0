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
        check_target(b"/tiles/a.jpg", b"v=" + b"1" * 600)
    assert status_of(caught.value) == 414


@pytest.mark.parametrize("query", [b"v=%2", b"q=%zz", b"v=1\x00", b"v=1#x", b"v=<script>", b"v=1\\", b"q=a b"])
def test_bad_queries_are_400(query):
    with pytest.raises(ProxyError) as caught:
        check_target(b"/tiles/covers/0/0/0.jpg", query)
    assert status_of(caught.value) == 400


def test_a_query_may_hold_percent_escapes_forwarded_as_they_are():
    query = b"q=S%C3%B8ren%20og%20Stra%C3%9Fe&limit=10&v=3"
    assert check_target(b"/tiles/covers/search", query) == b"/tiles/covers/search?" + query


def test_good_targets_pass_unchanged():
    assert check_target(b"/tiles/covers/3/1/2.jpg", b"v=7") == b"/tiles/covers/3/1/2.jpg?v=7"
    assert check_target(b"/tiles/covers_files/12/3_4.jpg", b"") == b"/tiles/covers_files/12/3_4.jpg"
    assert check_target(b"/", b"") == b"/"
    assert check_target(b"/tiles/covers.dzi", b"") == b"/tiles/covers.dzi"
    assert is_versioned(b"v=7") and is_versioned(b"x=1&v=2") and not is_versioned(b"") and not is_versioned(b"vv=1")


def test_escapes_of_plain_characters_are_decoded_and_the_result_checked():
    """The validator's id_escaped (``%2D`` for ``-``) is the same URL; an escaped slash or dot-dot is not let by."""
    assert check_target(b"/iiif/3/a%2Db/full/max/0/default.jpg", b"") == b"/iiif/3/a-b/full/max/0/default.jpg"
    assert check_target(b"/iiif/3/a/full/%5Emax/0/default.jpg", b"") == b"/iiif/3/a/full/^max/0/default.jpg"
    assert check_target(b"/iiif/3/a/full/!100,100/90/default.jpg", b"") == b"/iiif/3/a/full/!100,100/90/default.jpg"
    for path in (b"/iiif/3/a%2Fb/info.json", b"/iiif/3/%2e%2e/%2E%2E/x", b"/iiif/3/a%00/info.json",
                 b"/iiif/3/a%25/info.json", b"/iiif/3/a%zz/info.json", b"/iiif/3/%5B/info.json"):
        with pytest.raises(ProxyError) as caught:
            check_target(path, b"")
        assert status_of(caught.value) == 400, path
