"""IMDSv2 client: a session token (PUT, TTL header) on every GET, renewed before it expires.

The endpoint comes from ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` as in botocore (default
http://169.254.169.254). Timeouts are short and a 401 is answered once with a fresh token. Hop-limit
friendly: a token PUT whose answer never arrives (an instance with ``HttpPutResponseHopLimit`` 1 seen from
a container) fails within seconds with a message naming the setting, instead of hanging the boot.

urllib3, not httpx: botocore brings it into node-bootstrap anyway, and httpx's import (0.15-0.27 s, with its
command line's rich and click when they are installed) sat on every node's start before its first request.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import HTTPError

from bootstrap.errors import ImdsError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
HOP_LIMIT_HINT = ("on EC2 check the instance's metadata options: HttpEndpoint=enabled, and "
                  "HttpPutResponseHopLimit >= 2 when this runs in a container")


def endpoint_from_environment(environ: Mapping[str, str] = os.environ) -> str:
    """The IMDS endpoint as botocore resolves it: the variable if set, else the link-local address."""
    return (environ.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class InstanceIdentity:
    instance_id: str
    local_ipv4: str
    region: str
    availability_zone: str
    instance_type: str
    hostname: str


class ImdsClient:
    """Reads instance metadata with IMDSv2 tokens of ``token_ttl`` seconds.

    Network failures are tried ``attempts`` times, ``backoff`` seconds apart (doubling); each request
    waits at most ``timeout`` seconds. Raises ImdsError with what went wrong and where.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, token_ttl: int = 21600, timeout: float = 1.0,
                 attempts: int = 3, backoff: float = 0.2, clock: Callable[[], float] = time.monotonic):
        if not 1 <= token_ttl <= 21600:
            raise ValueError("token_ttl must be 1-21600 seconds")
        self.endpoint = endpoint.rstrip("/")
        self.token_ttl = token_ttl
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.clock = clock
        # a PoolManager reads no proxy settings: the metadata service is reached directly; retries are ours
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout), retries=False)
        self._token: str | None = None
        self._expires = 0.0
        self.tokens_fetched = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ, **options) -> ImdsClient:
        return cls(endpoint_from_environment(environ), **options)

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> ImdsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- token -----------------------------------------------------------------------------------
    def token(self) -> str:
        """A session token with time left; a new one is fetched a little before the old one expires."""
        margin = min(60.0, self.token_ttl * 0.1)
        if self._token is None or self.clock() >= self._expires - margin:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def _fetch_token(self) -> None:
        asked = self.clock()
        response = self._send("PUT", "/latest/api/token", {TTL_HEADER: str(self.token_ttl)})
        if response.status == 403:
            raise ImdsError(f"IMDS at {self.endpoint} refused a token (403): the metadata service may be "
                            "disabled, or a proxy added X-Forwarded-For")
        if response.status != 200 or not response.data:
            raise ImdsError(f"IMDS at {self.endpoint} answered the token PUT with {response.status}; "
                            f"this client speaks IMDSv2 only ({HOP_LIMIT_HINT})")
        try:
            ttl = int(response.headers.get(TTL_HEADER, self.token_ttl))
        except ValueError:
            ttl = self.token_ttl
        self._token, self._expires = response.data.decode(errors="replace"), asked + ttl
        self.tokens_fetched += 1
        log.debug("imds token fetched endpoint=%s ttl=%d", self.endpoint, ttl)

    # -- reads -----------------------------------------------------------------------------------
    def get_bytes(self, path: str) -> bytes | None:
        """The body at ``/latest/<path>``, or None if the service has nothing there (404)."""
        url = "/latest/" + path.lstrip("/")
        response = self._send("GET", url, {TOKEN_HEADER: self.token()})
        if response.status == 401:  # expired or forgotten early (metadata service restart): once more
            log.info("imds token refused endpoint=%s path=%s; fetching a new one", self.endpoint, url)
            self._token = None
            response = self._send("GET", url, {TOKEN_HEADER: self.token()})
            if response.status == 401:
                raise ImdsError(f"IMDS at {self.endpoint} refused a fresh token for {url} (401)")
        if response.status == 404:
            return None
        if response.status != 200:
            raise ImdsError(f"IMDS at {self.endpoint} answered {url} with {response.status}")
        return response.data

    def get(self, path: str) -> str:
        """The text at ``/latest/<path>``; ImdsError if there is none."""
        body = self.get_bytes(path)
        if body is None:
            raise ImdsError(f"IMDS at {self.endpoint} has no /latest/{path.lstrip('/')} (404)")
        return body.decode()

    def user_data(self) -> bytes | None:
        return self.get_bytes("user-data")

    def identity(self) -> InstanceIdentity:
        """Who and where this instance is (instance id, private IPv4, placement, type, hostname)."""
        zone = self.get("meta-data/placement/availability-zone")
        region = self.get_bytes("meta-data/placement/region")
        return InstanceIdentity(instance_id=self.get("meta-data/instance-id"),
                                local_ipv4=self.get("meta-data/local-ipv4"),
                                region=region.decode() if region else zone[:-1], availability_zone=zone,
                                instance_type=self.get("meta-data/instance-type"),
                                hostname=self.get("meta-data/hostname"))

    def _send(self, method: str, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return self._http.request(method, self.endpoint + url, headers=headers)
            except HTTPError as exc:
                if attempt == self.attempts:
                    hint = f" ({HOP_LIMIT_HINT})" if method == "PUT" else ""
                    raise ImdsError(f"no answer from IMDS at {self.endpoint} to {method} {url} after "
                                    f"{attempt} tries: {exc.__class__.__name__}: {exc}{hint}") from None
                log.debug("imds retry method=%s url=%s attempt=%d error=%r", method, url, attempt, str(exc))
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")
