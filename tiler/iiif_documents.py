"""IIIF documents of a dataset: the Image API 3.0 ``info.json``, the Presentation 3.0 manifest, and the items
as W3C annotations of its canvas (pages of ``ANNOTATIONS_PER_PAGE`` in drawing order, in one collection).

Both carry absolute ``id``s built from the public base URL (``--public-url``, or what the request and
trusted proxies say: ``gigaformat.forwarding``). The manifest is built with ``iiif-prezi3`` (imported on
first use: nodes that never serve one never load pydantic).
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

from gigaformat.levels import Geometry
from tiler.encode import FORMATS
from tiler.iiif_plan import MAX_AREA, MAX_HEIGHT, MAX_WIDTH

IMAGE_CONTEXT = "http://iiif.io/api/image/3/context.json"
PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
PROFILE = "level2"
PROFILE_URL = "http://iiif.io/api/image/3/level2.json"
EXTRA_FEATURES = ["mirroring", "canonicalLinkHeader", "profileLinkHeader"]
ANNOTATIONS_PER_PAGE = 500      # ~100 KB of JSON a page
MANIFEST_ANNOTATION_ITEMS = 10_000  # up to this many items the canvas lists every page; beyond, a viewer would
                                    # fetch them all at once, so only the collection (annotations.json) has them
MOTIVATION = "commenting"       # what Mirador's annotation panel lists (it shows commenting and tagging only)


def service_id(base_url: str, dataset: str) -> str:
    return f"{base_url}/iiif/3/{dataset}"


def info_document(geometry: Geometry, dataset: str, base_url: str) -> dict:
    """The Image Information document (Image API 3.0 section 5) of a dataset's canvas."""
    g = geometry
    sizes = [{"width": w, "height": h} for w, h in (g.level_size(z) for z in range(g.top + 1))
             if w <= MAX_WIDTH and h <= MAX_HEIGHT and w * h <= MAX_AREA]
    return {
        "@context": IMAGE_CONTEXT, "id": service_id(base_url, dataset), "type": "ImageService3",
        "protocol": "http://iiif.io/api/image", "profile": PROFILE,
        "width": g.width, "height": g.height,
        "maxWidth": MAX_WIDTH, "maxHeight": MAX_HEIGHT, "maxArea": MAX_AREA,
        "sizes": sizes,
        "tiles": [{"width": g.tile_size, "height": g.tile_size,
                   "scaleFactors": [1 << k for k in range(g.top + 1)]}],
        "preferredFormats": ["jpg"],
        "extraFormats": [f for f in FORMATS if f not in ("jpg", "png")],
        "extraQualities": ["color", "gray", "bitonal"],
        "extraFeatures": EXTRA_FEATURES,
    }


def canvas_id(base_url: str, dataset: str) -> str:
    return f"{service_id(base_url, dataset)}/canvas/1"


def page_count(items: int) -> int:
    return max(1, -(-items // ANNOTATIONS_PER_PAGE))


def page_id(base_url: str, dataset: str, page: int) -> str:
    return f"{service_id(base_url, dataset)}/annotations/{page}.json"


def collection_id(base_url: str, dataset: str) -> str:
    return f"{service_id(base_url, dataset)}/annotations.json"


def manifest_document(geometry: Geometry, dataset: str, generation: int, base_url: str, items: int) -> dict:
    """A Presentation 3.0 manifest: one canvas the size of the wall, painted by the dataset's image service;
    its ``annotations`` are the pages of the items' annotations when there are at most
    ``MANIFEST_ANNOTATION_ITEMS``."""
    from iiif_prezi3 import Annotation, AnnotationBody, AnnotationPage, AnnotationPageRef, Canvas, Manifest, ServiceV3

    service = service_id(base_url, dataset)
    canvas_id_ = canvas_id(base_url, dataset)
    body = AnnotationBody(id=f"{service}/full/max/0/default.jpg", type="Image", format="image/jpeg",
                          width=geometry.width, height=geometry.height,
                          service=[ServiceV3(id=service, type="ImageService3", profile=PROFILE)])
    painting = Annotation(id=f"{canvas_id_}/painting", type="Annotation", motivation="painting", body=body,
                          target=canvas_id_)
    listed = range(page_count(items)) if 0 < items <= MANIFEST_ANNOTATION_ITEMS else range(0)
    pages = [AnnotationPageRef(id=page_id(base_url, dataset, n), type="AnnotationPage") for n in listed] or None
    canvas = Canvas(id=canvas_id_, label={"none": [dataset]}, width=geometry.width, height=geometry.height,
                    items=[AnnotationPage(id=f"{canvas_id_}/page", type="AnnotationPage", items=[painting])],
                    annotations=pages)
    manifest = Manifest(id=f"{service}/manifest.json", label={"none": [dataset]},
                        summary={"none": [f"gigatile dataset {dataset}, generation {generation}"]},
                        items=[canvas])
    return json.loads(manifest.jsonld())


def annotation_collection(dataset: str, base_url: str, items: int) -> dict:
    """The W3C annotation collection of the items: how many, and the first and last page."""
    from iiif_prezi3 import AnnotationCollection, AnnotationPageRef

    last = page_count(items) - 1
    collection = AnnotationCollection(
        id=collection_id(base_url, dataset), type="AnnotationCollection", label={"none": [f"{dataset}: items"]},
        total=items, first=AnnotationPageRef(id=page_id(base_url, dataset, 0), type="AnnotationPage"),
        last=AnnotationPageRef(id=page_id(base_url, dataset, last), type="AnnotationPage"))
    doc = json.loads(collection.jsonld())
    doc.pop("items", None)  # the pages hold the items; iiif-prezi3 writes an empty list
    return doc


def item_text(item: dict) -> str:
    """What an annotation says of an item: its title and author where it has them, else its id."""
    meta = item["meta"]
    words = [meta[c] for c in ("title", "author") if meta.get(c)]
    return " — ".join(words) if words else item["id"]


def annotation_page(dataset: str, base_url: str, page: int, items: list[dict], total: int) -> dict:
    """Page ``page`` of the items' annotations: each item ``commenting`` its rectangle of the canvas."""
    from iiif_prezi3 import Annotation, AnnotationCollectionRef, AnnotationPage, AnnotationPageRef, TextualBody

    target = canvas_id(base_url, dataset)
    service = service_id(base_url, dataset)
    annotations = [
        Annotation(id=f"{service}/annotations/item/{quote(item['id'], safe='')}", type="Annotation",
                   motivation=MOTIVATION, label={"none": [item["id"]]},
                   body=TextualBody(type="TextualBody", value=item_text(item), format="text/plain"),
                   target=f"{target}#xywh={item['x']},{item['y']},{item['width']},{item['height']}")
        for item in items]
    last = page_count(total) - 1
    ref = lambda n: AnnotationPageRef(id=page_id(base_url, dataset, n), type="AnnotationPage")  # noqa: E731
    doc = AnnotationPage(id=page_id(base_url, dataset, page), type="AnnotationPage", items=annotations,
                         partOf=[AnnotationCollectionRef(id=collection_id(base_url, dataset),
                                                         type="AnnotationCollection")],
                         next=ref(page + 1) if page < last else None, prev=ref(page - 1) if page > 0 else None)
    return json.loads(doc.jsonld())


def encode_document(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def document_etag(body: bytes) -> str:
    """A strong ETag of a document's bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:24] + '"'


def json_media_type(accept: str, context: str) -> str:
    """``application/ld+json;profile=...`` when the client asks for JSON-LD (Image API 3.0 section 5.1),
    else ``application/json``."""
    if "application/ld+json" in accept.lower():
        return f'application/ld+json;profile="{context}"'
    return "application/json"
