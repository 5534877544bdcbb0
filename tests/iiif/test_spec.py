"""IIIF Image API 3.0, point by point (in process): status codes, sizes, CORS, documents, ids and proxies.

Each test names the spec point (https://iiif.io/api/image/3.0/) or issue 16's finding it checks.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.processes import wait_for
from tiler.app import build_app
from tiler.iiif_documents import IMAGE_CONTEXT
from tiler.settings import ServeSettings

BASE = "/iiif/3/awkward"
WIDTH, HEIGHT = 1531, 1002  # the awkward wall: 4 levels, no power of two anywhere


@contextlib.contextmanager
def make_client(root, peer: str = "testclient", **settings) -> Iterator[TestClient]:
    """A started app whose dataset is loaded, seen from a client at address ``peer``."""
    config = ServeSettings(root=root, datasets=("awkward",), reload_seconds=0.05, **settings)
    with TestClient(build_app(config), client=(peer, 50000), follow_redirects=False) as test_client:
        wait_for(lambda: test_client.get("/readyz").status_code == 200, 30, "the dataset loaded")
        yield test_client


@pytest.fixture(scope="module")
def client(awkward_root):
    with make_client(awkward_root) as test_client:
        yield test_client


def image(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


# --- 4.1-4.5 parameters and 7.2 status codes ---------------------------------------------------------------

STATUS = [
    # identifiers (issue: an escaped slash got 400; an identifier with '/' is unknown, so 404)
    ("/iiif/3/a/b/full/max/0/default.jpg", 404),
    ("/iiif/3/nope/full/max/0/default.jpg", 404),
    ("/iiif/3/nope/info.json", 404),
    ("/iiif/3/[frob]/full/max/0/default.jpg", 404),
    (f"{BASE}/nonsense.json", 404),
    # region
    (f"{BASE}/0,0,0,10/max/0/default.jpg", 400),
    (f"{BASE}/pct:0,0,0,10/max/0/default.jpg", 400),        # issue: pct:0 was accepted
    (f"{BASE}/pct:10,10,0.0,5/max/0/default.jpg", 400),
    (f"{BASE}/5000,0,10,10/max/0/default.jpg", 400),        # entirely outside
    (f"{BASE}/pct:100,0,10,10/max/0/default.jpg", 400),
    (f"{BASE}/1,2,3/max/0/default.jpg", 400),
    (f"{BASE}/-1,0,10,10/max/0/default.jpg", 400),
    # size
    (f"{BASE}/full/pct:0/0/default.jpg", 400),              # issue: pct:0 was accepted
    (f"{BASE}/full/pct:101/0/default.jpg", 400),
    (f"{BASE}/full/0,/0/default.jpg", 400),
    (f"{BASE}/full/,/0/default.jpg", 400),
    (f"{BASE}/full/!100,/0/default.jpg", 400),
    (f"{BASE}/full/2000,/0/default.jpg", 400),              # larger than the region without '^'
    (f"{BASE}/0,0,10,10/11,10/0/default.jpg", 400),
    (f"{BASE}/full/full/0/default.jpg", 400),               # 'full' is 2.x
    (f"{BASE}/full/^max/0/default.jpg", 501),               # issue: '^' got 400; spec: not implemented
    (f"{BASE}/full/^2000,/0/default.jpg", 501),
    (f"{BASE}/full/^,2000/0/default.jpg", 501),
    (f"{BASE}/full/^pct:150/0/default.jpg", 501),
    (f"{BASE}/full/^!3000,3000/0/default.jpg", 501),
    (f"{BASE}/full/^100,100/0/default.jpg", 501),
    # rotation
    (f"{BASE}/full/max/45/default.jpg", 501),               # arbitrary rotation: not implemented
    (f"{BASE}/full/max/!22.5/default.jpg", 501),
    (f"{BASE}/full/max/361/default.jpg", 400),
    (f"{BASE}/full/max/-90/default.jpg", 400),
    (f"{BASE}/full/max/ninety/default.jpg", 400),
    # quality and format
    (f"{BASE}/full/max/0/sepia.jpg", 400),
    (f"{BASE}/full/max/0/default", 400),
    (f"{BASE}/full/max/0/default.xyz", 400),
    (f"{BASE}/full/max/0/default.tif", 501),               # a format the spec names, not offered here
    (f"{BASE}/full/max/0/default.jp2", 501),
    (f"{BASE}/full/max/0/default.gif", 501),
    (f"{BASE}/full/max/0/default.pdf", 501),
    ("/iiif/3/" + "a" * 300 + "/info.json", 414),
]


@pytest.mark.parametrize(("path", "status"), STATUS)
def test_each_fault_gets_the_spec_status_with_a_reason(client, path, status):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.text.strip() and "Traceback" not in response.text


GOOD = [
    ("full/max/0/default.png", (WIDTH, HEIGHT)),
    ("square/max/0/default.png", (HEIGHT, HEIGHT)),
    ("10,20,30,40/max/0/default.png", (30, 40)),
    ("1500,990,100,100/max/0/default.png", (31, 12)),       # cropped at the image's edge
    ("pct:50,50,100,100/max/0/default.png", (765, 501)),    # past the edge: cropped
    ("full/500,/0/default.png", (500, 327)),
    ("full/,500/0/default.png", (764, 500)),
    ("full/300,200/0/default.png", (300, 200)),             # sizeByWh: distorted
    ("full/!300,300/0/default.png", (300, 196)),
    ("full/!300,3000/0/default.png", (300, 196)),           # confined by w alone
    ("0,0,100,100/!100,100/0/default.png", (100, 100)),
    ("full/pct:10/0/default.png", (153, 100)),
    ("full/pct:100/0/default.png", (WIDTH, HEIGHT)),
    ("full/max/90/default.png", (HEIGHT, WIDTH)),
    ("full/max/!270/default.png", (HEIGHT, WIDTH)),
    ("full/max/360/default.png", (WIDTH, HEIGHT)),
    ("full/max/90.0/gray.png", (HEIGHT, WIDTH)),
    ("full/100,/0/bitonal.png", (100, 65)),
    ("full/100,/0/color.webp", (100, 65)),
]


@pytest.mark.parametrize(("tail", "size"), GOOD)
def test_valid_requests_give_the_size_the_spec_defines(client, tail, size):
    assert Image.open(io.BytesIO(client.get(f"{BASE}/{tail}").content)).size == size


def test_confined_size_larger_than_the_region_is_refused_as_the_official_validator_requires(client):
    """Issue 16 read ``!w,h`` larger than the region as "confine to the region's size"; the official validator
    (size_noup: ``!2000,3000`` of its 1000x1000 image must not be 200) requires refusing it, and its bar wins.
    A box larger on one side only still confines (above: ``!300,3000``)."""
    assert client.get(f"{BASE}/0,0,100,100/!200,300/0/default.jpg").status_code == 400


def test_mirroring_rotation_and_qualities_are_the_transforms_of_the_same_pixels(client):
    plain = image(client.get(f"{BASE}/0,0,300,200/max/0/default.png"))
    assert np.array_equal(image(client.get(f"{BASE}/0,0,300,200/max/!0/default.png")), plain[:, ::-1])
    assert np.array_equal(image(client.get(f"{BASE}/0,0,300,200/max/90/default.png")), np.rot90(plain, -1))
    assert np.array_equal(image(client.get(f"{BASE}/0,0,300,200/max/!90/default.png")),
                          np.rot90(plain[:, ::-1], -1))
    assert np.array_equal(image(client.get(f"{BASE}/0,0,300,200/max/0/color.png")), plain)
    gray = image(client.get(f"{BASE}/0,0,300,200/max/0/gray.png"))
    assert gray.ndim == 2 and np.array_equal(gray, np.asarray(Image.fromarray(plain).convert("L")))
    bitonal = image(client.get(f"{BASE}/0,0,300,200/max/0/bitonal.png"))
    assert set(np.unique(bitonal)) <= {0, 255}


def test_an_if_none_match_never_hides_a_bad_url(client):
    """Issue: a request with If-None-Match got 304 before the URL was validated."""
    good = client.get(f"{BASE}/0,0,256,256/max/0/default.jpg")
    etag = good.headers["etag"]
    assert client.get(f"{BASE}/0,0,256,256/max/0/default.jpg", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"{BASE}/bogus/max/0/default.jpg", headers={"If-None-Match": etag}).status_code == 400
    assert client.get(f"{BASE}/bogus/max/0/default.jpg", headers={"If-None-Match": "*"}).status_code == 400


def test_image_answers_link_their_canonical_url_and_profile(client):
    response = client.get(f"{BASE}/pct:0,0,50,50/!200,200/!90/default.jpg")
    link = response.headers["link"]
    assert '<http://testserver/iiif/3/awkward/0,0,766,501/200,131/!90/default.jpg>;rel="canonical"' in link
    assert '<http://iiif.io/api/image/3/level2.json>;rel="profile"' in link


# --- one resampling definition: the pixels of /tiles/ at every scale --------------------------------------------


@pytest.fixture(scope="module")
def pyramid_client(awkward_pyramid_root):
    with make_client(awkward_pyramid_root) as test_client:
        yield test_client


@pytest.mark.parametrize("layout", ["chains", "pyramid"])
def test_every_iiif_tile_at_every_scale_factor_is_the_tiles_pixels(request, layout):
    """Issue: coarse IIIF tiles at non-power-of-two scales differed from /tiles/ (level 0: max 105)."""
    client = request.getfixturevalue("client" if layout == "chains" else "pyramid_client")
    info = client.get(f"{BASE}/info.json").json()
    tile = info["tiles"][0]["width"]
    factors = info["tiles"][0]["scaleFactors"]
    top = len(factors) - 1
    for k, factor in enumerate(factors):
        z = top - k
        span = tile * factor
        for ty in range(-(-HEIGHT // span)):
            for tx in range(-(-WIDTH // span)):
                x, y = tx * span, ty * span
                w, h = min(span, WIDTH - x), min(span, HEIGHT - y)
                size = f"{-(-w // factor)},{-(-h // factor)}"
                iiif = image(client.get(f"{BASE}/{x},{y},{w},{h}/{size}/0/default.png"))
                ours = image(client.get(f"/tiles/awkward/{z}/{tx}/{ty}.png"))[:iiif.shape[0], :iiif.shape[1]]
                assert iiif.shape == ours.shape and np.array_equal(iiif, ours), (z, tx, ty)


def test_a_stored_tile_asked_as_it_is_is_the_bytes_tiles_serves(pyramid_client):
    """Where a level is stored as JPEG tiles, the IIIF request of one whole tile answers its stored bytes."""
    info = pyramid_client.get(f"{BASE}/info.json").json()
    top = len(info["tiles"][0]["scaleFactors"]) - 1
    same = 0
    for z in range(top + 1):
        span = 256 << (top - z)
        for ty in range(HEIGHT // span):
            for tx in range(WIDTH // span):
                iiif = pyramid_client.get(f"{BASE}/{tx * span},{ty * span},{span},{span}/256,256/0/default.jpg")
                tile = pyramid_client.get(f"/tiles/awkward/{z}/{tx}/{ty}.jpg")
                assert iiif.status_code == tile.status_code == 200
                same += iiif.content == tile.content
    assert same >= 6  # the 1:1 level's 15 whole tiles are stored; derived levels are rendered


def test_every_listed_size_is_the_level_the_tiles_hold(client):
    info = client.get(f"{BASE}/info.json").json()
    top = len(info["tiles"][0]["scaleFactors"]) - 1
    for size in info["sizes"]:
        z = next(z for z in range(top + 1) if -(-WIDTH // (1 << (top - z))) == size["width"])
        whole = image(client.get(f"{BASE}/full/{size['width']},{size['height']}/0/default.png"))
        cols, rows = -(-size["width"] // 256), -(-size["height"] // 256)
        tiles = np.concatenate([np.concatenate([image(client.get(f"/tiles/awkward/{z}/{x}/{y}.png"))
                                                for x in range(cols)], axis=1) for y in range(rows)], axis=0)
        assert np.array_equal(whole, tiles[:size["height"], :size["width"]]), z


def _area_average(canvas: np.ndarray, x: int, y: int, w: int, h: int, ow: int, oh: int) -> np.ndarray:
    """The exact mean of the canvas under each output pixel's box (fractional edges weighted)."""
    def weights(start, length, out):
        edges = start + np.arange(out + 1) * (length / out)
        pixels = np.arange(start, start + length)
        lo = np.maximum(edges[:-1, None], pixels[None, :])
        hi = np.minimum(edges[1:, None], pixels[None, :] + 1)
        m = np.clip(hi - lo, 0, None)
        return m / m.sum(axis=1, keepdims=True)
    wy, wx = weights(y, h, oh), weights(x, w, ow)
    part = canvas[y:y + h, x:x + w].astype(np.float64)
    rows = np.tensordot(wy, part, axes=(1, 0))                  # (oh, w, 3)
    return np.transpose(np.tensordot(wx, rows, axes=(1, 1)), (1, 0, 2))  # (oh, ow, 3)


@pytest.mark.parametrize("tail", ["full/700,/0", "100,50,900,700/333,444/0", "pct:10,10,80,80/!500,500/0",
                                  "full/200,/0", "7,3,1500,990/97,61/0", "300,200,800,600/100,80/0"])
def test_other_sizes_are_the_area_average_of_the_canvas(client, tail):
    canvas = image(client.get(f"{BASE}/full/max/0/default.png")).astype(np.float64)
    got = image(client.get(f"{BASE}/{tail}/default.png")).astype(np.float64)
    region, size, _ = tail.split("/")
    info_w, info_h = (WIDTH, HEIGHT)
    if region == "full":
        x, y, w, h = 0, 0, info_w, info_h
    elif region.startswith("pct:"):
        x, y, w, h = 153, 100, 1225, 802
    else:
        x, y, w, h = (int(v) for v in region.split(","))
    want = _area_average(canvas, x, y, w, h, got.shape[1], got.shape[0])
    psnr = 10 * np.log10(255 ** 2 / max(float(((got - want) ** 2).mean()), 1e-9))
    assert psnr >= 38


# --- 5 image information, 7.1 CORS, 5.1 media types, base URI --------------------------------------------------


def test_info_json_is_level2_with_limits_and_the_features_offered(client):
    response = client.get(f"{BASE}/info.json")
    info = response.json()
    assert response.headers["content-type"] == "application/json"
    assert info["@context"] == IMAGE_CONTEXT and info["type"] == "ImageService3" and info["profile"] == "level2"
    assert info["id"] == "http://testserver/iiif/3/awkward"
    assert (info["width"], info["height"]) == (WIDTH, HEIGHT)
    assert {"maxWidth", "maxHeight", "maxArea"} <= set(info)
    assert info["tiles"] == [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8]}]
    assert "mirroring" in info["extraFeatures"] and "webp" in info["extraFormats"]


def test_max_stays_inside_the_published_limits(client, monkeypatch):
    from tiler import iiif_plan
    monkeypatch.setattr(iiif_plan, "MAX_AREA", 100_000)
    monkeypatch.setattr(iiif_plan, "MAX_WIDTH", 300)
    assert Image.open(io.BytesIO(client.get(f"{BASE}/full/max/0/default.png").content)).size == (300, 196)
    assert client.get(f"{BASE}/full/301,/0/default.png").status_code == 400
    monkeypatch.setattr(iiif_plan, "MAX_WIDTH", 4000)
    w, h = Image.open(io.BytesIO(client.get(f"{BASE}/full/max/0/default.png").content)).size
    assert w * h <= 100_000 and w == int(WIDTH * (100_000 / (WIDTH * HEIGHT)) ** 0.5)


def test_info_json_negotiates_json_ld_and_is_validated_by_etag(client):
    """Issue: info.json had no ETag/Last-Modified and ignored Accept."""
    plain = client.get(f"{BASE}/info.json")
    ld = client.get(f"{BASE}/info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"] == f'application/ld+json;profile="{IMAGE_CONTEXT}"'
    assert ld.json() == plain.json() and "accept" in plain.headers["vary"].lower()
    etag, modified = plain.headers["etag"], plain.headers["last-modified"]
    assert parsedate_to_datetime(modified).year >= 2024
    assert client.get(f"{BASE}/info.json", headers={"If-None-Match": etag}).status_code == 304
    other = client.get(f"{BASE}/info.json", headers={"Host": "elsewhere.example"})
    assert other.headers["etag"] != etag  # the ids differ, so does the document


def test_base_uri_redirects_to_an_absolute_info_json(client):
    """Issue: the redirect was relative."""
    response = client.get(BASE)
    assert response.status_code == 303
    assert response.headers["location"] == "http://testserver/iiif/3/awkward/info.json"
    assert client.get("/iiif/3/nope").status_code == 404


@pytest.mark.parametrize("path", [f"{BASE}/info.json", f"{BASE}/full/64,/0/default.jpg", f"{BASE}/manifest.json",
                                  "/tiles/awkward/0/0/0.jpg", "/tiles/awkward/info.json", "/tiles/awkward.dzi",
                                  f"{BASE}/full/max/45/default.jpg", "/iiif/3/nope/info.json", "/tiles/nope/0/0/0.jpg"])
def test_every_iiif_and_tile_answer_allows_any_origin(client, path):
    """Issue: no Access-Control-Allow-Origin anywhere."""
    response = client.get(path, headers={"Origin": "http://viewer.example"})
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", [f"{BASE}/info.json", f"{BASE}/full/max/0/default.jpg", "/tiles/awkward/0/0/0.jpg"])
def test_a_cors_preflight_is_answered(client, path):
    """Issue: a CORS preflight got 405."""
    response = client.options(path, headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET",
                                             "Access-Control-Request-Headers": "range, if-none-match"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "range, if-none-match"


# --- ids: the configured public URL, or the request as trusted proxies tell it ----------------------------------


def _id(client: TestClient, headers: dict) -> str:
    return client.get(f"{BASE}/info.json", headers=headers).json()["id"]


FORWARDED = {"X-Forwarded-Host": "tiles.example.com", "X-Forwarded-Proto": "https"}


def test_ids_follow_the_host_header_and_ignore_forwarding_from_untrusted_peers(awkward_root):
    """Issue: X-Forwarded-Proto was honoured from 127.0.0.1 whatever the configuration."""
    with make_client(awkward_root, peer="203.0.113.9") as client:
        assert _id(client, {"Host": "node.example:8080"}) == "http://node.example:8080/iiif/3/awkward"
        assert _id(client, {"Host": "node.example", **FORWARDED}) == "http://node.example/iiif/3/awkward"
        assert _id(client, {"Host": "node.example", "Forwarded": "host=evil.example;proto=https"}) == \
            "http://node.example/iiif/3/awkward"
    with make_client(awkward_root, peer="127.0.0.1", trusted_proxies="") as client:
        assert _id(client, {"Host": "node.example", **FORWARDED}) == "http://node.example/iiif/3/awkward"


def test_ids_follow_forwarding_headers_from_trusted_proxies(awkward_root):
    """Issue: ids ignored X-Forwarded-Host and Forwarded."""
    with make_client(awkward_root, peer="10.1.2.3", trusted_proxies="10.0.0.0/8") as client:
        assert _id(client, {"Host": "node", **FORWARDED}) == "https://tiles.example.com/iiif/3/awkward"
        assert _id(client, {"Host": "node", **FORWARDED, "X-Forwarded-Prefix": "/wall"}) == \
            "https://tiles.example.com/wall/iiif/3/awkward"
        assert _id(client, {"Host": "node", "Forwarded": 'for=198.51.100.7;host="a.example:8443";proto=https'}) == \
            "https://a.example:8443/iiif/3/awkward"
        # the element of the first untrusted hop counts, not one a client put in front of it
        chain = 'for=1.1.1.1;host=forged.example, for=198.51.100.7;host="b.example";proto=https'
        assert _id(client, {"Host": "node", "Forwarded": chain}) == "https://b.example/iiif/3/awkward"
        # values that are not a plain host or scheme are ignored, never written into a document
        assert _id(client, {"Host": "node", "X-Forwarded-Host": "x.example/<script>", "X-Forwarded-Proto": "gopher"}) \
            == "http://node/iiif/3/awkward"


def test_a_configured_public_url_wins(awkward_root):
    with make_client(awkward_root, peer="10.1.2.3", trusted_proxies="10.0.0.0/8",
                     public_url="https://wall.example.org/deep") as client:
        assert _id(client, {"Host": "node", **FORWARDED}) == "https://wall.example.org/deep/iiif/3/awkward"
        redirect = client.get(BASE)
        assert redirect.headers["location"] == "https://wall.example.org/deep/iiif/3/awkward/info.json"


# --- Presentation 3.0 ------------------------------------------------------------------------------------------


def test_the_manifest_is_a_valid_presentation_3_document_painted_by_the_image_service(client):
    from iiif_prezi3 import Manifest

    response = client.get(f"{BASE}/manifest.json", headers={"Accept": "application/ld+json"})
    assert response.headers["content-type"].startswith("application/ld+json")
    doc = response.json()
    manifest = Manifest(**{k: v for k, v in doc.items() if k != "@context"})  # pydantic validates the model
    assert str(manifest.id) == "http://testserver/iiif/3/awkward/manifest.json"
    canvas = doc["items"][0]
    assert (canvas["width"], canvas["height"]) == (WIDTH, HEIGHT)
    body = canvas["items"][0]["items"][0]["body"]
    assert body["service"][0] == {"id": "http://testserver/iiif/3/awkward", "type": "ImageService3",
                                  "profile": "level2"}
    assert client.get(body["id"].removeprefix("http://testserver")).status_code == 200


def test_the_items_are_w3c_annotations_of_the_canvas_in_pages_of_one_collection(client):
    """Issue 16, point 4: once items carry metadata, the items as a W3C annotation page of the canvas."""
    from iiif_prezi3 import AnnotationPage

    canvas = client.get(f"{BASE}/manifest.json").json()["items"][0]
    collection = client.get(f"{BASE}/annotations.json").json()
    assert collection["type"] == "AnnotationCollection" and collection["first"] == canvas["annotations"][0]
    pages, url = [], collection["first"]["id"]
    while url:
        page = client.get(url.removeprefix("http://testserver")).json()
        AnnotationPage(**{k: v for k, v in page.items() if k != "@context"})  # pydantic validates the model
        assert page["partOf"][0]["id"] == collection["id"]
        pages.append(page)
        url = page.get("next", {}).get("id")
    assert [p["id"] for p in pages] == [ref["id"] for ref in canvas["annotations"]]
    assert pages[-1]["id"] == collection["last"]["id"]
    annotations = [a for page in pages for a in page["items"]]
    assert len(annotations) == collection["total"] > 0
    for annotation in annotations[:40]:
        item = client.get(f"/tiles/awkward/items/{annotation['label']['none'][0]}").json()
        assert annotation["motivation"] == "commenting"
        assert annotation["target"] == (f"{canvas['id']}#xywh={item['x']},{item['y']},{item['width']},"
                                        f"{item['height']}")
    last = int(collection["last"]["id"].rsplit("/", 1)[1].removesuffix(".json"))
    for bad in (f"{last + 1}.json", "01.json", "x.json", "-1.json", "0.jsonx"):
        assert client.get(f"{BASE}/annotations/{bad}").status_code == 404, bad


def test_a_wall_of_many_items_lists_its_annotation_pages_only_in_the_collection():
    """Beyond MANIFEST_ANNOTATION_ITEMS a viewer opening the manifest would fetch every page at once."""
    from gigaformat.levels import Geometry
    from tiler.iiif_documents import ANNOTATIONS_PER_PAGE, MANIFEST_ANNOTATION_ITEMS, manifest_document

    g = Geometry(WIDTH, HEIGHT)
    assert "annotations" not in manifest_document(g, "a", 1, "http://h", MANIFEST_ANNOTATION_ITEMS + 1)["items"][0]
    assert len(manifest_document(g, "a", 1, "http://h", MANIFEST_ANNOTATION_ITEMS)["items"][0]["annotations"]) == \
        -(-MANIFEST_ANNOTATION_ITEMS // ANNOTATIONS_PER_PAGE)
