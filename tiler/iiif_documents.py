"""IIIF documents of a dataset: the Image API 3.0 ``info.json`` and the Presentation 3.0 manifest.

Both carry absolute ``id``s built from the public base URL (``--public-url``, or what the request and
trusted proxies say: ``gigaformat.forwarding``). The manifest is built with ``iiif-prezi3`` (imported on
first use: nodes that never serve one never load pydantic).
"""

from __future__ import annotations

import hashlib
import json

from gigaformat.levels import Geometry
from tiler.encode import FORMATS
from tiler.iiif_plan import MAX_AREA, MAX_HEIGHT, MAX_WIDTH

IMAGE_CONTEXT = "http://iiif.io/api/image/3/context.json"
PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
PROFILE = "level2"
PROFILE_URL = "http://iiif.io/api/image/3/level2.json"
EXTRA_FEATURES = ["mirroring", "canonicalLinkHeader", "profileLinkHeader"]


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


def manifest_document(geometry: Geometry, dataset: str, generation: int, base_url: str) -> dict:
    """A Presentation 3.0 manifest: one canvas the size of the wall, painted by the dataset's image service."""
    from iiif_prezi3 import Annotation, AnnotationBody, AnnotationPage, Canvas, Manifest, ServiceV3

    service = service_id(base_url, dataset)
    canvas_id = f"{service}/canvas/1"
    body = AnnotationBody(id=f"{service}/full/max/0/default.jpg", type="Image", format="image/jpeg",
                          width=geometry.width, height=geometry.height,
                          service=[ServiceV3(id=service, type="ImageService3", profile=PROFILE)])
    painting = Annotation(id=f"{canvas_id}/painting", type="Annotation", motivation="painting", body=body,
                          target=canvas_id)
    canvas = Canvas(id=canvas_id, label={"none": [dataset]}, width=geometry.width, height=geometry.height,
                    items=[AnnotationPage(id=f"{canvas_id}/page", type="AnnotationPage", items=[painting])])
    manifest = Manifest(id=f"{service}/manifest.json", label={"none": [dataset]},
                        summary={"none": [f"gigatile dataset {dataset}, generation {generation}"]},
                        items=[canvas])
    return json.loads(manifest.jsonld())


def encode_document(doc: dict) -> tuple[bytes, str]:
    """The document's bytes and a strong ETag of them."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:24] + '"'


def json_media_type(accept: str, context: str) -> str:
    """``application/ld+json;profile=...`` when the client asks for JSON-LD (Image API 3.0 section 5.1),
    else ``application/json``."""
    if "application/ld+json" in accept.lower():
        return f'application/ld+json;profile="{context}"'
    return "application/json"
