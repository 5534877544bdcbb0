"""The render server's HTTP layer (starlette): parse -> dataset -> render off the loop -> respond.

The core raises typed errors (``tiler.errors``, ``gigaformat.errors``); this module alone maps them to HTTP
statuses (``STATUS_CODES``). Rendering runs in a bounded thread pool; requests beyond ``max_queue`` waiting
get 503 with Retry-After, and /healthz never waits behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gigaformat import deepzoom
from gigaformat.errors import FormatError, GigatileError
from gigaformat.forwarding import Origin, parse_networks, public_origin
from gigaformat.levels import CELL_SIZE
from tiler import lazyfetch, malloc, metrics
from tiler.catalog import Catalog
from tiler.coarse_raster import RasterKeeper
from tiler.cors import CorsMiddleware
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile, media_type
from tiler.errors import BadRequest, Busy, CorruptData, NotFound, NotImplementedFeature, NotReady, PathTooLong
from tiler.iiif_documents import (
    ANNOTATIONS_PER_PAGE,
    IMAGE_CONTEXT,
    PRESENTATION_CONTEXT,
    PROFILE_URL,
    annotation_collection,
    annotation_page,
    document_etag,
    encode_document,
    info_document,
    json_media_type,
    manifest_document,
    service_id,
)
from tiler.iiif_parse import (
    IiifAnnotationsRequest,
    IiifBaseRequest,
    IiifImageRequest,
    IiifInfoRequest,
    parse_iiif_path,
)
from tiler.iiif_plan import Plan, finish, plan_request, render_plan
from tiler.settings import ServeSettings
from tiler.tile_cache import TileCache
from tiler.tile_request import (
    DatasetsRequest,
    DeepZoomTileRequest,
    DziRequest,
    InfoRequest,
    ItemAtRequest,
    ItemRequest,
    ItemsInRequest,
    SearchRequest,
    TileRequest,
    parse_tiles_path,
)

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=60"
AHEAD = "no-store"  # the URL names a generation this node has not switched to yet: it will soon

VIEWER_DIR = Path(__file__).parent / "viewer"
IIIF_CACHE_ENTRY = 256 << 10  # the largest IIIF answer kept in the IIIF cache


def cache_control(asked: int | None, current: int, generation: int) -> str:
    """Cache-Control of an answer for ``?v=asked`` where the answer's own version is ``current`` and the node
    serves ``generation``: a year for the version asked, nothing for one newer than the node (another node
    may have it: tile-proxy asks it), a minute otherwise (an older or a missing ``v``)."""
    if asked == current:
        return IMMUTABLE
    return AHEAD if asked is not None and asked > generation else SHORT


# The one place an error becomes a status; the first matching type wins (subclasses before their bases).
STATUS_CODES: tuple[tuple[type[Exception], int], ...] = (
    (PathTooLong, 414),
    (NotImplementedFeature, 501),
    (BadRequest, 400),
    (NotFound, 404),
    (NotReady, 503),
    (Busy, 503),
    (CorruptData, 500),
    (FormatError, 500),
    (GigatileError, 500),
)
RETRY_STATUSES = (503,)


def status_of(exc: Exception) -> int:
    return next(code for kind, code in STATUS_CODES if isinstance(exc, kind))


class RenderPool:
    """Bounded rendering off the event loop: ``threads`` at once, ``max_queue`` waiting, else 503."""

    def __init__(self, threads: int, max_queue: int):
        self.limiter = anyio.CapacityLimiter(threads)
        self.max_queue = max_queue
        self.waiting = 0
        metrics.RENDER_QUEUE_LIMIT.set(max_queue)

    async def run(self, func, *args):
        if self.waiting >= self.max_queue:
            metrics.OVERLOADED.inc()
            raise Busy("render queue is full; retry shortly")
        self.waiting += 1
        metrics.RENDER_QUEUE.inc()
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)
        finally:
            self.waiting -= 1
            metrics.RENDER_QUEUE.dec()


class IiifPool:
    """IIIF renders in threads of their own (``threads``, at a lower CPU priority than tile renders, so a
    IIIF burst never starves tiles), ``max_queue`` waiting, else 503. Once the pool has been idle for
    ``TRIM_AFTER_SECONDS`` the allocator's free memory is handed back (``trim_due``, ``tiler.malloc``); until
    then the next answer reuses the buffers of the last."""

    NICE = 10
    TRIM_AFTER_SECONDS = 0.5

    def __init__(self, threads: int, max_queue: int):
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="iiif", initializer=self._lower_priority)
        # the lower halves of tall renders, meanwhile (render_plan): a region is drawn on two cores
        self.helper = ThreadPoolExecutor(threads, thread_name_prefix="iiif-half", initializer=self._lower_priority)
        self.max_queue = max_queue
        self.waiting = 0
        self._idle_since: float | None = None  # when the pool last fell idle, until the trim after it
        self._lock = threading.Lock()

    @classmethod
    def _lower_priority(cls) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's nice value is its own
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), cls.NICE)

    def _done(self, future) -> None:
        with self._lock:
            self.waiting -= 1
            if self.waiting == 0:
                self._idle_since = time.monotonic()

    def trim_due(self) -> bool:
        """True once, when the pool has been idle ``TRIM_AFTER_SECONDS`` since its last answers: the caller
        then trims (``malloc.trim``, off the event loop)."""
        with self._lock:
            due = (self.waiting == 0 and self._idle_since is not None
                   and time.monotonic() - self._idle_since >= self.TRIM_AFTER_SECONDS)
            if due:
                self._idle_since = None
            return due

    async def run(self, func, *args):
        with self._lock:
            if self.waiting >= self.max_queue:
                metrics.OVERLOADED.inc()
                raise Busy("IIIF queue is full; retry shortly")
            self.waiting += 1
        try:
            future = self.executor.submit(func, *args)
        except BaseException:
            with self._lock:
                self.waiting -= 1
            raise
        future.add_done_callback(self._done)  # also when the client left and the render never started
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.helper.shutdown(wait=False, cancel_futures=True)


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    return any(tag.strip() in (etag, "*", f"W/{etag}") for tag in header.split(","))


class TileService:
    def __init__(self, settings: ServeSettings, catalog: Catalog, reload: Callable[[], Awaitable[None]]):
        self.settings = settings
        self.catalog = catalog
        self.reload = reload  # the app's catalog refresh (build_app), which the watch loop and /readyz call too
        self.pool = RenderPool(settings.render_threads, settings.max_queue)
        self.cache = TileCache(settings.cache_mb << 20)
        self.iiif_pool = IiifPool(settings.iiif_threads, settings.iiif_max_queue)
        # IIIF tiles and thumbnails, which viewers ask for again; a large one-off answer would evict hundreds
        # of them and keep a burst's memory (issue 17), so it is not kept
        self.iiif_cache = TileCache(settings.iiif_cache_mb << 20, IIIF_CACHE_ENTRY)
        self.trusted = parse_networks(settings.trusted_proxies)

    def _render(self, ds: LoadedDataset, z: int, x: int, y: int, fmt: str, crop: tuple[int, int] | None) -> bytes:
        started = time.perf_counter()
        data = ds.tile_bytes(z, x, y, fmt, self.settings.jpeg_quality, crop)
        metrics.RENDER_SECONDS.labels(str(z)).observe(time.perf_counter() - started)
        ds.note_answered()
        return data

    async def tile_response(self, request: Request, ds: LoadedDataset, z: int, x: int, y: int, fmt: str,
                            asked: int | None, crop: tuple[int, int] | None = None) -> Response:
        ds.check_tile(z, x, y)
        version = ds.tile_version(z, x, y)
        quality = f"-q{self.settings.jpeg_quality}" if fmt in ("jpg", "webp") else ""
        etag = f'"{ds.name}-v{version}{quality}"'
        headers = {"ETag": etag, "Cache-Control": cache_control(asked, version, ds.generation),
                   "X-Tile-Version": str(version)}
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        key = (ds.name, version, z, x, y, fmt, crop)
        data = self.cache.get(key)
        metrics.CACHE.labels("hit" if data is not None else "miss").inc()
        if data is None:
            data = await self.pool.run(self._render, ds, z, x, y, fmt, crop)
            self.cache.put(key, data)
        return Response(data, media_type=media_type(fmt), headers=headers)

    async def dataset(self, name: str) -> LoadedDataset:
        """Dataset ``name`` as this worker serves it. One that is wanted and not loaded here yet is looked for on
        disk at once, not at the watch loop's next poll: with several workers on one socket, another worker may
        have loaded it and answered /readyz (the node registers on that), and this request must not get 503."""
        try:
            return self.catalog.get(name)
        except NotReady:
            await self.reload()
            return self.catalog.get(name)

    async def tiles(self, request: Request) -> Response:
        parsed = parse_tiles_path(request.path_params["path"], request.query_params)
        if isinstance(parsed, DatasetsRequest):
            listing = [{"name": name, "generation": gen} for name, gen in self.catalog.generations().items()]
            return JSONResponse({"datasets": listing}, headers={"Cache-Control": "no-cache"})
        ds = await self.dataset(parsed.dataset)
        if isinstance(parsed, InfoRequest):
            return JSONResponse(ds.info(), headers={"Cache-Control": "no-cache"})
        if isinstance(parsed, TileRequest):
            return await self.tile_response(request, ds, parsed.z, parsed.x, parsed.y, parsed.fmt, parsed.version)
        if isinstance(parsed, ItemAtRequest | ItemRequest | ItemsInRequest | SearchRequest):
            return await self.items(ds, parsed)
        if isinstance(parsed, DziRequest):
            dzi = deepzoom.dzi_document(ds.geometry.width, ds.geometry.height, "jpg", ds.geometry.tile_size)
            return Response(dzi, media_type="application/xml", headers={"Cache-Control": "no-cache"})
        return await self.deepzoom_tile(request, ds, parsed)

    async def items(self, ds: LoadedDataset, req) -> Response:
        """The bookstore's answers, as JSON; cached a year when ``v`` names the generation served, else a
        minute (the proxy caches them like tiles)."""
        catalog = ds.catalog
        if isinstance(req, ItemAtRequest):
            doc = catalog.at(req.x, req.y)
        elif isinstance(req, ItemRequest):
            doc = catalog.one(req.item_id)
        elif isinstance(req, ItemsInRequest):
            doc = await self.pool.run(catalog.within, req.bbox, req.limit)
        else:
            doc = await self.pool.run(catalog.search, req.query, req.filters, req.limit, req.offset)
        cache = cache_control(req.version, ds.generation, ds.generation)
        return JSONResponse(doc, headers={"Cache-Control": cache, "X-Generation": str(ds.generation)})

    async def deepzoom_tile(self, request: Request, ds: LoadedDataset, req: DeepZoomTileRequest) -> Response:
        g = ds.geometry
        found = deepzoom.locate(g, req.level, req.col, req.row)
        if found is None:
            top = deepzoom.max_level(g.width, g.height)
            raise NotFound(f"no DeepZoom tile {req.level}/{req.col}_{req.row}: levels are 0-{top}")
        if found.crop is not None:  # a whole tile is the tile /tiles/ serves (a stored JPEG as it is stored)
            whole = found.crop == (g.tile_size, g.tile_size)
            return await self.tile_response(request, ds, found.z, found.col, found.row, req.fmt, req.version,
                                            None if whole else found.crop)
        version = int(ds.cells.max())
        data = await self.pool.run(lambda: encode_tile(ds.render_below_zero(-found.z), req.fmt,
                                                       self.settings.jpeg_quality))
        return Response(data, media_type=media_type(req.fmt),
                        headers={"Cache-Control": cache_control(req.version, version, ds.generation)})

    # -- IIIF ------------------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        """The public base URL of this service: ``--public-url``, else the request's, as trusted proxies say."""
        if self.settings.public_url:
            return self.settings.public_url
        host = request.headers.get("host", "") or f"{self.settings.host}:{self.settings.port}"
        seen = Origin(request.url.scheme, host)
        peer = request.client.host if request.client else ""
        return public_origin(peer, seen, request.headers, self.trusted).base_url

    async def iiif(self, request: Request) -> Response:
        parsed = parse_iiif_path(request.path_params["path"])
        ds = await self.dataset(parsed.dataset)
        base = self.base_url(request)
        if isinstance(parsed, IiifBaseRequest):
            return RedirectResponse(f"{service_id(base, ds.name)}/info.json", status_code=303,
                                    headers={"Cache-Control": "no-cache"})
        if isinstance(parsed, IiifInfoRequest):
            doc, context = info_document(ds.geometry, ds.name, base), IMAGE_CONTEXT
        elif isinstance(parsed, IiifImageRequest):
            return await self.iiif_image(request, ds, parsed, base)
        elif isinstance(parsed, IiifAnnotationsRequest):
            # a page costs ~40 ms to build: kept with the IIIF answers, so a revalidation does not rebuild it
            key = (ds.name, ds.generation, "annotations", parsed.page, base)
            body = self.iiif_cache.get(key)
            if body is None:
                body = encode_document(await self.iiif_pool.run(self.annotations_document, ds, parsed.page, base))
                self.iiif_cache.put(key, body)
            return self._document_response(request, ds, body, PRESENTATION_CONTEXT)
        else:
            doc = manifest_document(ds.geometry, ds.name, ds.generation, base, len(ds.catalog.ids))
            context = PRESENTATION_CONTEXT
        return self._document_response(request, ds, encode_document(doc), context)

    @staticmethod
    def _document_response(request: Request, ds: LoadedDataset, body: bytes, context: str) -> Response:
        """A IIIF JSON document with its validators (a strong ETag of its bytes, the generation's time)."""
        etag = document_etag(body)
        headers = {"ETag": etag, "Last-Modified": formatdate(ds.loaded_at, usegmt=True), "Cache-Control": "no-cache",
                   "Vary": "Accept"}
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=json_media_type(request.headers.get("accept", ""), context),
                        headers=headers)

    @staticmethod
    def annotations_document(ds: LoadedDataset, page: int | None, base: str) -> dict:
        """The items' annotation collection (``page`` None), or one page of it; NotFound past the last."""
        total = len(ds.catalog.ids)
        if page is None:
            return annotation_collection(ds.name, base, total)
        start = page * ANNOTATIONS_PER_PAGE
        if start >= max(total, 1):
            raise NotFound(f"no annotation page {page}: {ds.name} has {total} items, "
                           f"{ANNOTATIONS_PER_PAGE} a page")
        positions = list(range(start, min(total, start + ANNOTATIONS_PER_PAGE)))
        return annotation_page(ds.name, base, page, ds.catalog.describe(positions), total)

    def _render_iiif(self, ds: LoadedDataset, plan: Plan, req: IiifImageRequest) -> bytes:
        started = time.perf_counter()
        copied = ds.coarse is not None and ds.coarse.has(plan.z)  # a copy out of the raster: no need of two cores
        helper = None if copied else self.iiif_pool.helper
        pixels = finish(render_plan(plan, ds.geometry, ds.render_level_window, helper, ds.decodes_tiles(plan.z)),
                        req.mirror, req.rotation, req.quality)
        data = encode_tile(pixels, req.fmt, self.settings.jpeg_quality)
        metrics.RENDER_SECONDS.labels("iiif").observe(time.perf_counter() - started)
        return data

    @staticmethod
    def _stored_tile(ds: LoadedDataset, plan: Plan, req: IiifImageRequest) -> bytes | None:
        """The stored JPEG of the whole interior tile a request names as it is, else None."""
        g = ds.geometry
        size, f = g.tile_size, g.factor(plan.z)
        if (req.fmt != "jpg" or req.quality not in ("default", "color") or req.mirror or req.rotation
                or (plan.out_width, plan.out_height, plan.width, plan.height) != (size, size, size * f, size * f)
                or plan.x % (size * f) or plan.y % (size * f)):
            return None
        return ds.stored_tile(plan.z, plan.x // (size * f), plan.y // (size * f))

    async def iiif_image(self, request: Request, ds: LoadedDataset, req: IiifImageRequest, base: str) -> Response:
        plan = plan_request(ds.geometry, req)  # every fault of the URL is answered before any 304
        cells = ds.cells[plan.y // CELL_SIZE:-(-(plan.y + plan.height) // CELL_SIZE),
                         plan.x // CELL_SIZE:-(-(plan.x + plan.width) // CELL_SIZE)]
        version = int(cells.max()) if cells.size else ds.generation
        quality = f"-q{self.settings.jpeg_quality}" if req.fmt in ("jpg", "webp") else ""
        etag = f'"{ds.name}-v{version}{quality}"'
        rotation = f"{'!' if req.mirror else ''}{req.rotation}"
        canonical = f"{service_id(base, ds.name)}/{plan.canonical}/{rotation}/{req.quality}.{req.fmt}"
        headers = {"ETag": etag, "Cache-Control": SHORT,
                   "Link": f'<{canonical}>;rel="canonical", <{PROFILE_URL}>;rel="profile"'}
        if _etag_matches(request, etag):
            return Response(status_code=304, headers=headers)
        stored = self._stored_tile(ds, plan, req)
        if stored is not None:  # exactly a stored tile: the bytes /tiles/ serves
            return Response(stored, media_type=media_type(req.fmt), headers=headers)
        key = (ds.name, version, plan, rotation, req.quality, req.fmt)
        data = self.iiif_cache.get(key)
        metrics.CACHE.labels("iiif_hit" if data is not None else "iiif_miss").inc()
        if data is None:
            data = await self.iiif_pool.run(self._render_iiif, ds, plan, req)
            self.iiif_cache.put(key, data)
        return Response(data, media_type=media_type(req.fmt), headers=headers)


def _error(route: str, exc: GigatileError) -> Response:
    status = status_of(exc)
    headers = {"Cache-Control": "no-store"}
    if status in RETRY_STATUSES:
        headers["Retry-After"] = "1"
    if status >= 500 and status not in RETRY_STATUSES and status != 501:  # 501: a feature not offered
        log.error("request failed route=%s status=%d error=%r", route, status, str(exc))
    metrics.REQUESTS.labels(route, str(status)).inc()
    return PlainTextResponse(str(exc) + "\n", status_code=status, headers=headers)


def _guarded(route: str, handler):
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except GigatileError as exc:
            return _error(route, exc)
        metrics.REQUESTS.labels(route, str(response.status_code)).inc()
        return response
    return endpoint


UNLOADED_POLL_SECONDS = 0.05  # how often a worker looks for data while a wanted dataset is not loaded (a few stats)


def build_app(settings: ServeSettings, catalog: Catalog | None = None) -> CorsMiddleware:
    catalog = catalog or Catalog(settings.root, settings.datasets, rasters=RasterKeeper(settings.coarse_raster_mb),
                                 announces=not settings.bucket)  # a registry node's heartbeat announces

    async def refresh() -> None:
        try:
            loaded = await anyio.to_thread.run_sync(catalog.refresh)
            for name in loaded:
                metrics.GENERATION.labels(name).set(catalog.loaded[name].generation)
            if loaded:  # what loading freed goes back to the system (free() itself does not trim: tiler.malloc)
                await anyio.to_thread.run_sync(malloc.trim)
            for name, ds in catalog.loaded.items():  # attached in the background (tiler.coarse_raster)
                metrics.COARSE_RASTER.labels(name).set(ds.coarse.nbytes if ds.coarse is not None else 0)
        except Exception:  # a watcher that dies would freeze the node on old data
            log.exception("dataset refresh failed")

    service = TileService(settings, catalog, reload=refresh)
    metrics.watch_disk(settings.root)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})

    async def readyz(request: Request) -> Response:
        ready, missing = catalog.ready()
        if not ready:  # what reached the disk since the watch loop last looked counts at once (a few stats)
            await refresh()
            ready, missing = catalog.ready()
        doc = {"ready": ready, "datasets": catalog.generations(), "waiting": missing,
               "lazy": sorted(name for name, ds in catalog.loaded.items() if ds.lazy)}
        return JSONResponse(doc, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def watch() -> None:
        while True:  # a node's first tile waits on this: markers are looked at often until every wanted dataset loads
            waiting = any(name not in catalog.loaded and name not in catalog.errors for name in catalog.wanted)
            await asyncio.sleep(min(settings.reload_seconds, UNLOADED_POLL_SECONDS) if waiting
                                else settings.reload_seconds)
            await refresh()
            if service.iiif_pool.trim_due():
                await anyio.to_thread.run_sync(malloc.trim)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        catalog.request_wanted()
        # What is on disk is loaded before this worker takes a connection: with several workers on one socket,
        # a worker still loading would answer 503 "not loaded yet" while another already says ready.
        await refresh()
        if not catalog.ready()[0]:  # waiting for data that may come lazily: its S3 client is built meanwhile
            lazyfetch.build_client_ahead()
        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            service.iiif_pool.close()

    routes = [
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint),
        Route("/tiles/{path:path}", _guarded("tiles", service.tiles)),
        Route("/iiif/3/{path:path}", _guarded("iiif", service.iiif)),
    ]
    if settings.viewer and VIEWER_DIR.is_dir():
        routes.append(Mount("/viewer", app=StaticFiles(directory=VIEWER_DIR, html=True), name="viewer"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.catalog = catalog
    app.state.service = service
    return CorsMiddleware(app)


def create_app() -> CorsMiddleware:
    """Factory for uvicorn workers: settings come from the CLI through the environment."""
    malloc.keep_freed_until_trim()
    return build_app(ServeSettings.from_env())
