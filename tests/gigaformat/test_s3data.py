"""A client built from botocore's data cut to a few S3 operations (gigaformat.s3data) sends the same requests and
reads the same answers as one built from botocore's own data, on AWS (regions, partitions, FIPS, addressing
styles) and on a local endpoint."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from gigaformat import s3data

OPERATIONS = ("GetObject", "PutObject")
NO_SUCH_KEY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key '
               b'does not exist.</Message><Key>k</Key></Error>')


class _Raw:
    """The raw stream of a canned response (what urllib3 would hand botocore)."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, *args, **kwargs):
        yield self.body

    def read(self, *args, **kwargs):
        body, self.body = self.body, b""
        return body


def canned(status: int, body: bytes = b"", headers: dict | None = None):
    """A ``before-send`` handler that records each request and answers ``status`` without any network."""
    seen = []

    def send(request, **kwargs):
        seen.append(request)
        if request.method == "PUT":
            return AWSResponse(request.url, 200, {"Content-Length": "0", "ETag": '"e"'}, _Raw(b""))
        return AWSResponse(request.url, status, {"Content-Length": str(len(body)), **(headers or {})}, _Raw(body))

    return send, seen


def client(small: bool, region: str, endpoint: str | None, addressing: str | None):
    session = botocore.session.get_session()
    if small:
        loader = s3data.s3_loader(session, OPERATIONS)
        assert loader is not None
        session.register_component("data_loader", loader)
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, s3={"addressing_style": addressing}
                    if addressing else None)
    return session.create_client("s3", region_name=region, endpoint_url=endpoint, config=config)


def signed(request) -> tuple:
    """What identifies a request: method, URL, its headers (but the clock and the random invocation id) and the
    signature's scope."""
    auth = request.headers["Authorization"].decode() if isinstance(request.headers["Authorization"], bytes) \
        else request.headers["Authorization"]
    scope = auth.split("Credential=")[1].split(",")[0].split("/", 2)[2]  # region/service/aws4_request
    names = auth.split("SignedHeaders=")[1].split(",")[0]
    varying = ("authorization", "x-amz-date", "amz-sdk-invocation-id")
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in varying}
    return request.method, request.url, sorted(headers.items()), scope, names


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DATA_PATH", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.mark.parametrize(("region", "endpoint", "addressing", "fips"), [
    ("us-east-1", None, None, False),
    ("eu-west-1", None, None, False),
    ("eu-west-1", None, "path", False),
    ("us-west-2", None, "virtual", True),
    ("cn-north-1", None, None, False),
    ("us-gov-west-1", None, None, False),
    ("us-east-1", "http://127.0.0.1:9000", None, False),
    ("us-east-1", "http://localhost:8333", "path", False),
])
def test_the_cut_client_sends_what_the_full_one_sends(monkeypatch, region, endpoint, addressing, fips):
    if fips:
        monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    requests = {}
    for small in (False, True):
        s3 = client(small, region, endpoint, addressing)
        send, seen = canned(206, b"abc", {"Content-Range": "bytes 0-2/10"})
        s3.meta.events.register("before-send.s3", send)
        got = s3.get_object(Bucket="my-bucket", Key="data/d/packs/p 1.bin", Range="bytes=0-2")
        assert (got["Body"].read(), got["ContentRange"]) == (b"abc", "bytes 0-2/10")
        s3.put_object(Bucket="my-bucket", Key="logs/i/boxlink.log", Body=b"log", ContentType="text/plain")
        requests[small] = [signed(r) for r in seen]
    assert requests[True] == requests[False]
    assert len(requests[True]) == 2


@pytest.mark.parametrize(("status", "body", "code"), [(404, NO_SUCH_KEY, "NoSuchKey"), (304, b"", "304")])
def test_the_cut_client_reads_errors_as_the_full_one(status, body, code):
    for small in (False, True):
        s3 = client(small, "us-east-1", "http://127.0.0.1:9000", None)
        send, _ = canned(status, body)
        s3.meta.events.register("before-send.s3", send)
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket="b", Key="k", IfNoneMatch='"etag"')
        assert caught.value.response["Error"]["Code"] == code


def test_the_folder_is_written_once_and_knows_only_its_operations(tmp_path):
    session = botocore.session.get_session()
    assert s3data.s3_loader(session, OPERATIONS) is not None
    folder = s3data.folder_for(OPERATIONS)
    assert folder.is_dir() and str(folder).startswith(str(tmp_path))
    written = (folder / "s3" / s3data.API_VERSION / "service-2.json").stat().st_mtime_ns
    assert s3data.s3_loader(session, OPERATIONS) is not None
    assert (folder / "s3" / s3data.API_VERSION / "service-2.json").stat().st_mtime_ns == written
    s3 = client(True, "us-east-1", None, None)
    assert hasattr(s3, "get_object") and not hasattr(s3, "list_buckets")


def test_other_model_folders_keep_botocore_s_own_loader(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    assert s3data.s3_loader(botocore.session.get_session(), OPERATIONS) is None


def test_an_unwritable_cache_keeps_botocore_s_own_loader(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert s3data.s3_loader(botocore.session.get_session(), OPERATIONS) is None


def test_a_damaged_cut_folder_is_dropped_and_botocore_s_own_data_used(tmp_path):
    from gigaformat.s3 import make_client

    assert s3data.s3_loader(botocore.session.get_session(), OPERATIONS) is not None
    folder = s3data.folder_for(OPERATIONS)
    model = folder / "s3" / s3data.API_VERSION / "service-2.json"
    model.write_bytes(model.read_bytes()[:1000])  # a file cut short, as by a crash of the disk under it
    s3 = make_client(transfer_methods=False, operations=OPERATIONS, region="us-east-1")
    assert hasattr(s3, "get_object") and hasattr(s3, "list_buckets")  # the full client
    assert not folder.exists()  # written again by the next process
    assert s3data.s3_loader(botocore.session.get_session(), OPERATIONS) is not None and model.is_file()
