"""No IIIF URL gets a 5xx: hypothesis draws URLs from the Image API's grammar (and near misses of it) against
the awkward wall, in process. 501 (a valid request for a feature not offered) is the one 5xx allowed."""

from __future__ import annotations

import urllib.parse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.iiif.test_spec import make_client

NUMBER = st.one_of(st.integers(0, 3000).map(str), st.integers(0, 10 ** 12).map(str),
                   st.floats(0, 200, allow_nan=False).map(lambda v: f"{v:.3f}".rstrip("0")), st.sampled_from(
                       ["", "0", "00", "-1", "1e3", ".5", "5.", "0x10", "٣"]))
REGION = st.one_of(st.sampled_from(["full", "square", "Full", "pct:", "max"]),
                   st.tuples(NUMBER, NUMBER, NUMBER, NUMBER).map(",".join),
                   st.tuples(NUMBER, NUMBER, NUMBER, NUMBER).map(lambda t: "pct:" + ",".join(t)))
SIZE = st.one_of(st.sampled_from(["max", "^max", "full", ",", "!,", "pct:"]),
                 st.tuples(st.sampled_from(["", "^", "!", "^!", "!^"]), NUMBER, NUMBER).map(
                     lambda t: f"{t[0]}{t[1]},{t[2]}"),
                 st.tuples(st.sampled_from(["", "^"]), NUMBER).map(lambda t: f"{t[0]}pct:{t[1]}"))
ROTATION = st.tuples(st.sampled_from(["", "!", "!!"]), NUMBER).map("".join)
QUALITY = st.sampled_from(["default", "color", "gray", "bitonal", "grey", "", "DEFAULT"])
FORMAT = st.sampled_from(["jpg", "png", "webp", "tif", "gif", "jp2", "pdf", "", "JPG", "jpg.png"])
IDENTIFIER = st.sampled_from(["awkward", "nope", "a/b", "awkward/x", "..", "AWKWARD", "awkward%2F"])
NOISE = st.text(st.characters(codec="utf-8", exclude_characters="?#"), max_size=12)
SEGMENT = st.one_of(REGION, SIZE, ROTATION, NOISE)


@st.composite
def iiif_paths(draw) -> str:
    identifier = draw(IDENTIFIER)
    shape = draw(st.sampled_from(["image", "image", "image", "info", "manifest", "base", "noise"]))
    if shape == "info":
        return f"/iiif/3/{identifier}/info.json"
    if shape == "manifest":
        return f"/iiif/3/{identifier}/manifest.json"
    if shape == "base":
        return f"/iiif/3/{identifier}"
    if shape == "noise":
        return f"/iiif/3/{identifier}/" + "/".join(draw(st.lists(SEGMENT, max_size=6)))
    parts = [draw(REGION), draw(SIZE), draw(ROTATION), f"{draw(QUALITY)}.{draw(FORMAT)}"]
    if draw(st.booleans()):
        index = draw(st.integers(0, 3))
        parts[index] = draw(SEGMENT)
    return f"/iiif/3/{identifier}/" + "/".join(parts)


def test_no_iiif_url_gets_a_5xx(awkward_root):
    with make_client(awkward_root) as client:

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(iiif_paths())
        def check(path: str) -> None:
            response = client.get(urllib.parse.quote(path, safe="/:,!^%"))
            assert response.status_code < 500 or response.status_code == 501, (path, response.text)
            if response.status_code >= 400:
                assert response.text.strip() and "Traceback" not in response.text

        check()
