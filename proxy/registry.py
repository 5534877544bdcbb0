"""The live backends, from the registration records in ``s3://BUCKET/proxy/`` and active health checks.

A record becomes a backend when it parses, names an address inside ``--allow-net`` (anything else is logged
once and never contacted) and claims sane routes. A backend is *live* while its heartbeat is fresh and its
``/readyz`` answers 200. A backend that fails a proxied request is ejected at once and re-admitted by a
passing health check no sooner than one health interval later.

Polling is cheap when nothing changed: one LIST; a record is fetched again only when its ETag or
LastModified changed. When S3 cannot be listed, the last known records are kept (nodes cannot renew either,
so their age would say nothing).

A record nobody renewed for ``--sweep-ttls`` times its TTL (by its heartbeat *and* by S3's LastModified) is
deleted: a SIGKILLed node's record does not stay forever. The delete is conditional on the ETag the LIST
saw (``If-Match``), so a record rewritten meanwhile is never removed; several proxies sweeping at once
delete it once and the others find it gone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from gigaformat.clock import parse_iso
from gigaformat.errors import FormatError
from gigaformat.registration import DEFAULT_TTL_SECONDS, PREFIX, Registration
from gigaformat.s3 import describe, make_client
from proxy import routing
from proxy.settings import ProxySettings

log = logging.getLogger(__name__)

MAX_RECORDS = 1000  # one LIST page; a bucket with more records than this is misused
_ROUTE = re.compile(r"^(/[A-Za-z0-9._-]+)+(/\*)?$")
_RESERVED = ("/proxy", "/metrics", "/healthz")


def make_s3_client():
    """An S3 client from the AWS chain with short timeouts: a slow LIST must not freeze the backend set."""
    return make_client(attempts=2, connect_timeout=2, read_timeout=5, max_connections=16)


def parse_route(route: str) -> str | None:
    """A claimed route as a prefix (``"/tiles/"`` for ``"/tiles/*"``) or exact path; None if refused."""
    if not _ROUTE.match(route) or any(route == r or route.startswith(r + "/") for r in _RESERVED):
        return None
    return route[:-1] if route.endswith("/*") else route


def route_matches(route: str, path: str) -> bool:
    return path.startswith(route) if route.endswith("/") else path == route


@dataclass
class Backend:
    key: str
    version: tuple[str, str]                # (ETag, LastModified) of the record we read
    record: Registration
    routes: tuple[str, ...]
    fresh: bool = True
    healthy: bool = False
    checked: float | None = None            # wall-clock time of the last health check
    error: str = ""
    hold_until: float = 0.0                 # an ejected backend is not re-admitted before this (monotonic)
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "failures": 0})
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=4096))  # seconds, read by the fleet page

    @property
    def id(self) -> str:
        address = self.record.address
        return f"[{address}]:{self.record.port}" if ":" in address else f"{address}:{self.record.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.id}"

    @property
    def live(self) -> bool:
        return self.fresh and self.healthy

    def serves(self, path: str) -> bool:
        return any(route_matches(route, path) for route in self.routes)


class Registry:
    def __init__(self, settings: ProxySettings, s3, http: httpx.AsyncClient,
                 on_change: Callable[[set[str]], None] | None = None):
        self.settings = settings
        self.on_change = on_change  # called with every backend id when the live set changes
        self.bucket = settings.bucket
        self.s3 = s3
        self.http = http
        self.backends: dict[str, Backend] = {}
        self.ignored: dict[str, tuple[tuple[str, str], str]] = {}  # key -> (record version, reason)
        self.claimed: dict[str, None] = {}  # every route ever claimed (ordered set): 502, not 404, when all die
        self.live: tuple[Backend, ...] = ()
        self.shares: dict[str, float] = {}
        self.polled: float | None = None
        self.poll_error = ""
        self.modified: dict[str, datetime] = {}  # key -> LastModified of the last LIST
        self.reachable_since: datetime | None = None  # first good LIST since start or since S3 failed
        self.swept = 0
        self.after_poll: list[Callable[[], None]] = []  # called after every poll (service discovery)

    # -- what the request path asks ------------------------------------------------------------------------

    def claims(self, path: str) -> bool:
        """True when some backend has claimed a route covering ``path`` since the proxy started."""
        return any(route_matches(route, path) for route in self.claimed)

    def live_for(self, path: str) -> dict[str, Backend]:
        """Live backends serving ``path``, by id."""
        return {b.id: b for b in self.live if b.serves(path)}

    def eject(self, backend: Backend, reason: str) -> None:
        """Take ``backend`` out of rotation now; a passing health check brings it back later."""
        backend.stats["failures"] += 1
        if backend.healthy:
            log.warning("backend ejected id=%s reason=%s", backend.id, reason)
        backend.healthy = False
        backend.error = reason
        backend.hold_until = time.monotonic() + self.settings.health_seconds
        self._recompute()

    # -- polling S3 ----------------------------------------------------------------------------------------

    async def poll(self) -> None:
        """List the records, read the changed ones, drop the removed ones, re-evaluate freshness."""
        began = time.monotonic()
        try:
            listing = await asyncio.to_thread(self._list)
        except (ClientError, BotoCoreError) as exc:
            if not self.poll_error:
                log.warning("registry poll failed bucket=%s error=%s", self.bucket, describe(exc))
            self.poll_error = describe(exc)
            self.reachable_since = None
            return
        self.poll_error = ""
        if self.reachable_since is None:
            self.reachable_since = datetime.now(UTC)
        listing, self.modified = listing
        changed = [key for key, version in listing.items() if self._known_version(key) != version]
        bodies = await asyncio.gather(*(asyncio.to_thread(self._get, key) for key in changed))
        for key, body in zip(changed, bodies, strict=True):
            if body is not None:
                self._admit(key, listing[key], body)
        for key in [k for k in self.backends if k not in listing]:
            log.info("backend deregistered id=%s key=%s", self.backends[key].id, key)
            del self.backends[key]
        for key in [k for k in self.ignored if k not in listing]:
            del self.ignored[key]
        now = datetime.now(UTC)
        for backend in self.backends.values():
            fresh = backend.record.is_fresh(now)
            if fresh != backend.fresh:
                log.log(logging.INFO if fresh else logging.WARNING, "backend heartbeat %s id=%s heartbeat=%s",
                        "fresh" if fresh else "lapsed", backend.id, backend.record.heartbeat)
            if not fresh:  # when it comes back, it is checked again before taking traffic
                backend.healthy, backend.checked = False, None
            backend.fresh = fresh
        self.polled = time.time()
        self._recompute()
        if time.monotonic() - began > max(2.0, self.settings.poll_seconds):
            log.warning("registry poll was slow seconds=%.1f records=%d", time.monotonic() - began, len(listing))

    def _known_version(self, key: str) -> tuple[str, str] | None:
        if key in self.backends:
            return self.backends[key].version
        return self.ignored[key][0] if key in self.ignored else None

    def _list(self) -> tuple[dict[str, tuple[str, str]], dict[str, datetime]]:
        page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=PREFIX, MaxKeys=MAX_RECORDS)
        if page.get("IsTruncated"):
            log.warning("registry has more than %d records; reading the first %d", MAX_RECORDS, MAX_RECORDS)
        contents = page.get("Contents", [])
        versions = {o["Key"]: (o.get("ETag", ""), str(o.get("LastModified", ""))) for o in contents}
        return versions, {o["Key"]: o["LastModified"] for o in contents if isinstance(o.get("LastModified"), datetime)}

    # -- sweeping records nobody renews --------------------------------------------------------------------

    def abandoned(self, now: datetime) -> list[tuple[str, str]]:
        """(key, ETag) of the records to sweep: unchanged in S3 and unrenewed for ``sweep_ttls`` x their TTL.

        A record counts only when both clocks agree it is old: its own heartbeat (the node's clock) and S3's
        LastModified (the server's), each against this proxy's clock; and only once S3 has been reachable
        for a whole TTL (after an outage nobody could renew). A record that does not parse has no
        heartbeat; its LastModified and the default TTL decide.
        """
        if self.settings.sweep_ttls <= 0:
            return []
        found = []
        for key, modified in self.modified.items():
            backend = self.backends.get(key)
            ttl = backend.record.ttl_seconds if backend is not None else DEFAULT_TTL_SECONDS
            grace = self.settings.sweep_ttls * max(1, ttl)
            if (now - modified).total_seconds() <= grace:
                continue
            if self.reachable_since is None or (now - self.reachable_since).total_seconds() <= ttl:
                continue  # after an S3 outage (or at start) the node gets a whole TTL to renew first
            if backend is not None and (now - parse_iso(backend.record.heartbeat)).total_seconds() <= grace:
                continue
            if backend is None and key not in self.ignored:
                continue  # not read yet (its GET failed): decide on a later poll
            etag = backend.version[0] if backend is not None else self.ignored[key][0][0]
            found.append((key, etag))
        return found

    async def sweep(self) -> int:
        """Delete the abandoned records (conditionally on their ETag); the number deleted."""
        deleted = 0
        for key, etag in self.abandoned(datetime.now(UTC)):
            if await asyncio.to_thread(self._delete_if_unchanged, key, etag):
                deleted += 1
                self.swept += 1
                self.backends.pop(key, None)
                self.ignored.pop(key, None)
                self.modified.pop(key, None)
        if deleted:
            self._recompute()
        return deleted

    def _delete_if_unchanged(self, key: str, etag: str) -> bool:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412"):
                log.info("sweep skipped key=%s reason=changed or gone since listed", key)
            elif code not in ("NoSuchKey", "404"):  # another proxy swept it first
                log.warning("sweep failed key=%s error=%s", key, describe(exc))
            return False
        except BotoCoreError as exc:
            log.warning("sweep failed key=%s error=%s", key, describe(exc))
            return False
        log.info("registration swept key=%s grace_ttls=%s", key, self.settings.sweep_ttls)
        return True

    def _get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(65536)
        except (ClientError, BotoCoreError) as exc:
            log.warning("registry read failed key=%s error=%s", key, describe(exc))
            return None

    def _ignore(self, key: str, version: tuple[str, str], reason: str) -> None:
        self.backends.pop(key, None)
        self.ignored[key] = (version, reason)
        log.warning("registration ignored key=%s reason=%s", key, reason)

    def _admit(self, key: str, version: tuple[str, str], body: bytes) -> None:
        try:
            record = Registration.from_bytes(body)
        except FormatError as exc:
            return self._ignore(key, version, str(exc))
        if not self.settings.allows(record.address):
            return self._ignore(key, version, f"address {record.address} is outside --allow-net")
        if record.key != key:
            return self._ignore(key, version, f"record names {record.key}, not its own key")
        routes = tuple(r for r in (parse_route(route) for route in record.routes) if r is not None)
        if len(routes) != len(record.routes):
            return self._ignore(key, version, f"record claims refused routes {record.routes}")
        self.ignored.pop(key, None)
        old = self.backends.get(key)
        if old is None:
            log.info("backend registered id=%s key=%s routes=%s", record.address, key, ",".join(record.routes))
            self.backends[key] = Backend(key, version, record, routes)
        else:
            old.version, old.record, old.routes = version, record, routes
        for route in routes:
            self.claimed.setdefault(route, None)

    # -- health --------------------------------------------------------------------------------------------

    async def check_health(self) -> None:
        """GET /readyz on every fresh backend at once; 200 is healthy."""
        candidates = [b for b in self.backends.values() if b.fresh]
        results = await asyncio.gather(*(self._check(b) for b in candidates))
        now = time.time()
        for backend, error in zip(candidates, results, strict=True):
            backend.checked = now
            if error:
                if backend.healthy:
                    log.warning("backend unhealthy id=%s error=%s", backend.id, error)
                backend.healthy, backend.error = False, error
            elif not backend.healthy and time.monotonic() >= backend.hold_until:
                log.info("backend healthy id=%s", backend.id)
                backend.healthy, backend.error = True, ""
        self._recompute()

    async def _check(self, backend: Backend) -> str:
        try:
            response = await self.http.get(backend.base_url + "/readyz")
        except httpx.HTTPError as exc:
            return f"{exc.__class__.__name__}: {exc}".strip(": ")
        return "" if response.status_code == 200 else f"/readyz answered {response.status_code}"

    def _recompute(self) -> None:
        live = tuple(b for b in self.backends.values() if b.live)
        if [b.id for b in live] != [b.id for b in self.live]:
            self.shares = routing.shares([b.id for b in live])
            if self.on_change is not None:
                self.on_change({b.id for b in self.backends.values()})
            log.info("live backends now=%s", ",".join(b.id for b in live) or "none")
        self.live = live

    # -- loops ---------------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """One poll and one round of health checks (at start, before serving)."""
        await self.poll()
        self._polled()
        await self.check_health()

    def _polled(self) -> None:
        for listener in self.after_poll:
            try:
                listener()
            except Exception:
                log.exception("after-poll listener failed")

    async def run_polls(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                await self.poll()
                await self.sweep()
                self._polled()
                if any(b.fresh and b.checked is None for b in self.backends.values()):
                    await self.check_health()  # a new node is checked at once, not a health interval later
            except Exception:  # a dead poller would freeze the backend set
                log.exception("registry poll crashed")

    async def run_health_checks(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_seconds)
            try:
                await self.check_health()
            except Exception:
                log.exception("health check round crashed")

    def status(self) -> list[dict]:
        """The backends and ignored records, for /proxy/status."""
        rows = []
        for backend in self.backends.values():
            state = "live" if backend.live else ("stale" if not backend.fresh else "unhealthy")
            rows.append({
                "id": backend.id, "address": backend.record.address, "port": backend.record.port,
                "key": backend.key, "state": state, "fresh": backend.fresh,
                "healthy": backend.healthy, "heartbeat": backend.record.heartbeat,
                "ttl_seconds": backend.record.ttl_seconds, "routes": backend.record.routes,
                "datasets": backend.record.datasets, "instance_id": backend.record.instance_id,
                "last_check": iso_time(backend.checked), "error": backend.error,
                "hash_share": round(self.shares.get(backend.id, 0.0), 4), **backend.stats,
            })
        rows.extend({"key": key, "state": "ignored", "error": reason} for key, (_, reason) in self.ignored.items())
        return rows


def iso_time(moment: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, or None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
