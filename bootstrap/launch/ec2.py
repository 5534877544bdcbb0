"""EC2 RunInstances for render nodes: the request (pure) and sending it. AWS settings (region, credentials,
``AWS_ENDPOINT_URL_EC2``) come from AWS's own chain."""

from __future__ import annotations

from typing import Any

from bootstrap.errors import BootstrapError
from bootstrap.node.userdata import DEFAULT_COMMAND, NodeConfig, render_user_data

DEFAULT_INSTANCE_TYPE = "c6i.large"
DEFAULT_TAGS = {"Name": "gigatile-render", "gigatile:role": "render"}


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BootstrapError(f"--tag {pair!r}: use KEY=VALUE")
        tags[key] = value
    return tags


def build_run_request(config: NodeConfig, image_id: str, instance_type: str = DEFAULT_INSTANCE_TYPE,
                      count: int = 1, subnet_id: str | None = None, security_group_ids: list[str] | None = None,
                      instance_profile: str | None = None, key_name: str | None = None,
                      tags: dict[str, str] | None = None, user_data_style: str = "json",
                      command: str = DEFAULT_COMMAND, hop_limit: int = 2) -> dict[str, Any]:
    """The keyword arguments of EC2 RunInstances for ``count`` render nodes (pure: nothing is sent).

    IMDSv2 only (``HttpTokens=required``); the hop limit lets a containerised node reach the service.
    """
    if count < 1:
        raise BootstrapError("--count must be at least 1")
    all_tags = {**DEFAULT_TAGS, "gigatile:bucket": config.bucket, "gigatile:channel": config.channel,
                **(tags or {})}
    tag_list = [{"Key": k, "Value": v} for k, v in all_tags.items()]
    request: dict[str, Any] = {
        "ImageId": image_id, "InstanceType": instance_type, "MinCount": count, "MaxCount": count,
        "UserData": render_user_data(config, user_data_style, command),
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                            "HttpPutResponseHopLimit": hop_limit},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list},
                              {"ResourceType": "volume", "Tags": tag_list}],
    }
    if subnet_id:
        request["SubnetId"] = subnet_id
    if security_group_ids:
        request["SecurityGroupIds"] = list(security_group_ids)
    if instance_profile:
        request["IamInstanceProfile"] = ({"Arn": instance_profile} if instance_profile.startswith("arn:")
                                         else {"Name": instance_profile})
    if key_name:
        request["KeyName"] = key_name
    return request


def run_instances(request: dict[str, Any], region: str | None = None) -> list[dict[str, Any]]:
    """Send the request (boto3 encodes UserData in base64); returns the instances EC2 reports."""
    import boto3  # here: ``--local`` launches (a node's cold start is timed from them) need no boto3 (~0.2 s)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.session.Session().client("ec2", region_name=region or None)
        return client.run_instances(**request)["Instances"]
    except (ClientError, BotoCoreError) as exc:
        raise BootstrapError(f"RunInstances failed: {exc}") from None
