"""The IMDSv2 emulator and the client: tokens, their expiry, 401 handling, identity, and botocore's view."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from bootstrap.errors import ImdsError
from bootstrap.launch.imds_emulator import ImdsServer, InstanceMetadata
from bootstrap.node.imds import DEFAULT_ENDPOINT, TOKEN_HEADER, TTL_HEADER, ImdsClient, endpoint_from_environment
from tests.processes import free_port, wait_for

USER_DATA = b'{"gigatile": 1, "bucket": "zoomii-tiles"}'


@pytest.fixture
def imds():
    metadata = InstanceMetadata(instance_id="i-0abc123", local_ipv4="127.0.0.1", user_data=USER_DATA,
                                region="eu-west-1", availability_zone="eu-west-1b", instance_type="c6i.large")
    with ImdsServer(metadata) as server:
        yield server


def test_client_reads_identity_and_user_data(imds):
    with ImdsClient(imds.url) as client:
        identity = client.identity()
        assert client.user_data() == USER_DATA
    assert (identity.instance_id, identity.local_ipv4, identity.region, identity.availability_zone,
            identity.instance_type, identity.hostname) == ("i-0abc123", "127.0.0.1", "eu-west-1", "eu-west-1b",
                                                           "c6i.large", "ip-127-0-0-1.local")
    assert client.tokens_fetched == 1 and imds.tokens.issued == 1  # one token for all seven reads


def test_the_emulator_is_imdsv2_only(imds):
    assert httpx.get(f"{imds.url}/latest/meta-data/instance-id").status_code == 401
    assert httpx.get(f"{imds.url}/latest/user-data", headers={TOKEN_HEADER: "forged"}).status_code == 401
    assert httpx.put(f"{imds.url}/latest/api/token").status_code == 400  # no TTL
    assert httpx.put(f"{imds.url}/latest/api/token", headers={TTL_HEADER: "21601"}).status_code == 400
    assert httpx.put(f"{imds.url}/latest/api/token",
                     headers={TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.9"}).status_code == 403
    token = httpx.put(f"{imds.url}/latest/api/token", headers={TTL_HEADER: "60"})
    assert token.status_code == 200 and token.headers[TTL_HEADER] == "60"
    listing = httpx.get(f"{imds.url}/latest/meta-data/placement/", headers={TOKEN_HEADER: token.text})
    assert listing.text.split() == ["availability-zone", "region"]
    assert httpx.get(f"{imds.url}/latest/meta-data/nope", headers={TOKEN_HEADER: token.text}).status_code == 404


def test_an_expired_token_is_refused_and_the_client_renews_before_expiry(imds):
    token = httpx.put(f"{imds.url}/latest/api/token", headers={TTL_HEADER: "1"}).text
    url = f"{imds.url}/latest/meta-data/instance-id"
    assert httpx.get(url, headers={TOKEN_HEADER: token}).status_code == 200
    wait_for(lambda: httpx.get(url, headers={TOKEN_HEADER: token}).status_code == 401, 5, "token expiry")

    with ImdsClient(imds.url, token_ttl=1) as client:
        first = client.token()
        assert client.get("meta-data/instance-id") == "i-0abc123"
        wait_for(lambda: client.token() != first, 5, "a renewed token")  # renewed before the server refuses it
        refused_before = imds.tokens.refused
        assert client.get("meta-data/instance-id") == "i-0abc123"
    assert imds.tokens.refused == refused_before


def test_a_refused_token_is_replaced_once_and_the_read_retried(imds):
    with ImdsClient(imds.url) as client:
        assert client.get("meta-data/local-ipv4") == "127.0.0.1"
        imds.tokens.revoke_all()  # as if the metadata service restarted
        assert client.get("meta-data/local-ipv4") == "127.0.0.1"
        assert client.tokens_fetched == 2 and imds.tokens.refused == 1


def test_a_token_refused_twice_is_an_error(imds, monkeypatch):
    monkeypatch.setattr(imds.tokens, "valid", lambda token: False)
    with ImdsClient(imds.url) as client, pytest.raises(ImdsError, match="refused a fresh token"):
        client.get("meta-data/instance-id")
    assert client.tokens_fetched == 2


def test_missing_user_data_is_none_and_missing_metadata_an_error():
    with ImdsServer(InstanceMetadata(instance_id="i-0abc", local_ipv4="127.0.0.1")) as server, \
            ImdsClient(server.url) as client:
        assert client.user_data() is None
        with pytest.raises(ImdsError, match="has no /latest/meta-data/public-ipv4"):
            client.get("meta-data/public-ipv4")


def test_no_metadata_service_fails_fast_naming_the_hop_limit():
    port = free_port()  # nothing listens there
    with ImdsClient(f"http://127.0.0.1:{port}", timeout=0.3, attempts=2, backoff=0.05) as client, \
            pytest.raises(ImdsError, match="HttpPutResponseHopLimit") as caught:
        client.identity()
    assert "after 2 tries" in str(caught.value)  # gives up after its attempts (how fast: bench, not here)


def test_endpoint_comes_from_the_environment_as_in_botocore():
    assert endpoint_from_environment({}) == DEFAULT_ENDPOINT == "http://169.254.169.254"
    assert endpoint_from_environment({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.9:81/"}) == \
        "http://127.0.0.9:81"


def test_botocore_reads_the_emulator(imds, monkeypatch):
    """botocore's own IMDSv2 code (endpoint from the environment, token, then the zone) against the emulator."""
    from botocore.session import get_session
    from botocore.utils import InstanceMetadataRegionFetcher

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url + "/")
    endpoint = get_session().get_config_variable("ec2_metadata_service_endpoint")
    fetcher = InstanceMetadataRegionFetcher(timeout=2, num_attempts=1,
                                            config={"ec2_metadata_service_endpoint": endpoint})
    assert fetcher.retrieve_region() == "eu-west-1"
    assert imds.tokens.issued == 1 and imds.tokens.refused == 0


def test_the_emulator_runs_as_a_program(tmp_path):
    user_data = tmp_path / "user-data"
    user_data.write_bytes(USER_DATA)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bootstrap.cli", "imds", "--host", "127.0.0.1", "--port",
                                str(port), "--user-data", str(user_data), "--instance-id", "i-0cli"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with ImdsClient(f"http://127.0.0.1:{port}", attempts=20, backoff=0.1) as client:
            assert client.user_data() == USER_DATA
            assert client.get("meta-data/instance-id") == "i-0cli"
    finally:
        process.terminate()
        assert process.wait(10) == 0
