"""User-data: the versioned JSON document, bare or inside a script / cloud-config, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootstrap.errors import BootstrapError
from bootstrap.node.userdata import FORMAT_VERSION, NewerDocument, NodeConfig, parse_user_data, render_user_data


def test_a_minimal_document_gets_the_defaults():
    config = parse_user_data(b'{"gigatile": 1, "bucket": "zoomii-tiles"}')
    assert config == NodeConfig(bucket="zoomii-tiles")
    assert (config.datasets, config.port, config.channel, config.root) == (("covers",), 8080, "current",
                                                                            "/srv/gigatile")


@pytest.mark.parametrize("style", ["json", "cloud-config", "script"])
def test_every_style_round_trips(style):
    config = NodeConfig(bucket="zoomii-tiles", datasets=("covers", "spines"), port=80, channel="canary",
                        root="/data/node", workers=4, ttl_seconds=12, sync_interval=0.5, bind="0.0.0.0",
                        s3_endpoint_url="http://10.0.0.5:8333", region="eu-west-1", self_update=False,
                        trusted_proxies="10.0.0.0/16,::1/128", public_url="https://tiles.example.com/wall")
    text = render_user_data(config, style)
    assert parse_user_data(text.encode()) == config
    first = text.splitlines()[0]
    assert {"json": first == "{", "cloud-config": first == "#cloud-config", "script": first == "#!/bin/sh"}[style]


def test_cloud_config_runs_node_bootstrap_once_and_stays_yaml():
    text = render_user_data(NodeConfig(bucket="zoomii-tiles"), "cloud-config")
    assert "runcmd:\n  - [sh, -c, \"nohup /opt/gigatile/bin/node-bootstrap run" in text
    assert text.count("# gigatile-node: ") == 1


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "user-data is empty"),
    (b"   \n", "user-data is empty"),
    (b"\xff\xfe", "not UTF-8"),
    (b"update_exe.sh; screen -c render.rc", "has no '# gigatile-node: {...}' line"),
    (b"#!/bin/sh\n# gigatile-node: {}\n# gigatile-node: {}\n", "has 2"),
    (b'{"gigatile": 1, "bucket": "b",}', "not valid JSON"),
    (b'["gigatile"]', "expected a JSON object or exactly one"),
    (b'{"bucket": "zoomii-tiles"}', 'no "gigatile": 1'),
    (b'{"gigatile": 2, "bucket": "zoomii-tiles"}', "format version 2 is newer"),
    (b'{"gigatile": "1", "bucket": "zoomii-tiles"}', "gigatile='1' is not valid"),
    (b'{"gigatile": 1}', "bucket is required"),
    (b'{"gigatile": 1, "bucket": "B"}', "bucket='B' is not valid"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "prot": 80}', "unknown key(s) prot"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "aws_secret_access_key": "x"}', "must not carry secrets"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "port": 0}', "port=0 is not valid"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "port": true}', "port=True is not valid"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "datasets": "covers"}', "a JSON list"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "datasets": []}', "datasets=[] is not valid"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "datasets": ["Covers"]}', "datasets=['Covers']"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "root": "srv"}', "an absolute path"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "bind": "localhost"}', "an IP address"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "sync_interval": 0}', "sync_interval=0"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "self_update": "yes"}', "true or false"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "s3_endpoint_url": "s3.local"}', "http(s)://"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "trusted_proxies": "10.0.0.0/99"}', "not an IP address or network"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "trusted_proxies": 10}', "trusted_proxies=10 is not valid"),
    (b'{"gigatile": 1, "bucket": "zoomii-tiles", "public_url": "tiles.example.com"}', "http(s)://host"),
])
def test_bad_user_data_is_refused_with_a_clear_message(raw, message):
    with pytest.raises(BootstrapError) as caught:
        parse_user_data(raw)
    assert message in str(caught.value)


@pytest.mark.parametrize("raw", [
    b'{"gigatile": 2, "bucket": "zoomii-tiles", "port": 80}',
    b'{"gigatile": 1, "bucket": "zoomii-tiles", "port": 80, "shelf_colour": "oak"}',
])
def test_a_newer_document_still_says_where_a_fresher_bootstrap_is(raw):
    with pytest.raises(NewerDocument) as caught:
        parse_user_data(raw)
    assert caught.value.known == NodeConfig(bucket="zoomii-tiles", port=80)


@pytest.mark.parametrize("raw", [
    b'{"gigatile": 2, "port": 80}',
    b'{"gigatile": 1, "bucket": "B", "shelf_colour": "oak"}',
    b'{"gigatile": 1, "bucket": "zoomii-tiles", "aws_session_token": "x", "shelf_colour": "oak"}',
])
def test_a_newer_document_whose_known_keys_are_wrong_is_refused_outright(raw):
    with pytest.raises(BootstrapError) as caught:
        parse_user_data(raw)
    assert not isinstance(caught.value, NewerDocument)


def test_documents_carry_their_version_and_nothing_empty():
    doc = json.loads(render_user_data(NodeConfig(bucket="zoomii-tiles")))
    assert doc["gigatile"] == FORMAT_VERSION
    assert "s3_endpoint_url" not in doc and "bind" not in doc and doc["datasets"] == ["covers"]
    assert "trusted_proxies" not in doc and "public_url" not in doc


def test_the_render_server_is_told_its_trusted_proxies_and_public_url():
    from bootstrap.node.imds import InstanceIdentity
    from bootstrap.node.lifecycle import child_specs
    from gigaformat.layout import NodeLayout

    identity = InstanceIdentity(instance_id="i-1", local_ipv4="10.0.1.5", region="eu-west-1",
                                availability_zone="eu-west-1a", instance_type="c6i.large", hostname="ip-10-0-1-5")
    layout = NodeLayout(Path("/srv/gigatile"))
    plain = child_specs(NodeConfig(bucket="zoomii-tiles"), identity, layout, {})[0].argv
    assert "--trusted-proxies" not in plain and "--public-url" not in plain  # tiler serve's defaults: loopback
    told = child_specs(NodeConfig(bucket="zoomii-tiles", trusted_proxies="10.0.0.0/16",
                                  public_url="https://tiles.example.com"), identity, layout, {})[0].argv
    assert told[told.index("--trusted-proxies") + 1] == "10.0.0.0/16"
    assert told[told.index("--public-url") + 1] == "https://tiles.example.com"


def test_user_data_larger_than_ec2_allows_is_refused():
    with pytest.raises(BootstrapError, match="EC2 allows 16384"):
        parse_user_data(b"{" + b" " * 17000 + b"}")
