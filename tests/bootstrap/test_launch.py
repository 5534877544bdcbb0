"""The EC2 launcher against a moto EC2 server: what RunInstances receives, and --dry-run."""

from __future__ import annotations

import base64
import json
import subprocess

import boto3
import pytest

from bootstrap.node.userdata import NodeConfig, parse_user_data
from tests.bootstrap.conftest import EC2_RENDER


@pytest.fixture
def ec2(moto_ec2):
    client = boto3.client("ec2", endpoint_url=moto_ec2.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    iam = boto3.client("iam", endpoint_url=moto_ec2.endpoint_url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    if not any(p["InstanceProfileName"] == "gigatile-node" for p in iam.list_instance_profiles()["InstanceProfiles"]):
        iam.create_instance_profile(InstanceProfileName="gigatile-node")
    return client


def launcher(moto_ec2, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EC2_RENDER), *args], capture_output=True, text=True, timeout=60, env=moto_ec2.env)


def test_run_instances_gets_the_user_data_tags_type_and_profile(moto_ec2, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.11.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.11.23.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="gigatile-render", Description="render", VpcId=vpc)["GroupId"]

    done = launcher(moto_ec2, "--bucket", "zoomii-tiles", "--image-id", "ami-0c1d2e3f4a5b6c7d8", "--instance-type",
                    "c6i.xlarge", "--count", "2", "--subnet-id", subnet, "--security-group-id", group,
                    "--instance-profile", "gigatile-node", "--tag", "team=books", "--port", "80",
                    "--dataset", "covers", "--dataset", "spines", "--channel", "canary")

    assert done.returncode == 0, done.stderr
    ids = [line.split()[0] for line in done.stdout.splitlines()]
    assert len(ids) == 2 and all(i.startswith("i-") for i in ids)
    instances = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    # moto associates the profile with the reservation's first instance only (EC2: with each of them)
    assert instances[0]["IamInstanceProfile"]["Arn"].endswith(":instance-profile/gigatile-node")
    for instance in instances:
        assert instance["InstanceType"] == "c6i.xlarge" and instance["ImageId"] == "ami-0c1d2e3f4a5b6c7d8"
        assert instance["SubnetId"] == subnet and [g["GroupId"] for g in instance["SecurityGroups"]] == [group]
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags == {"Name": "gigatile-render", "gigatile:role": "render", "gigatile:bucket": "zoomii-tiles",
                        "gigatile:channel": "canary", "team": "books"}
        encoded = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"],
                                                  Attribute="userData")["UserData"]["Value"]
        config = parse_user_data(base64.b64decode(encoded))
        assert config == NodeConfig(bucket="zoomii-tiles", datasets=("covers", "spines"), port=80,
                                    channel="canary", warmup=True)


def test_dry_run_prints_the_request_and_sends_nothing(moto_ec2, ec2):
    def count() -> int:
        return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])

    before = count()
    done = launcher(moto_ec2, "--bucket", "zoomii-tiles", "--image-id", "ami-0c1d2e3f4a5b6c7d8", "--dry-run",
                    "--user-data-style", "cloud-config", "--instance-profile",
                    "arn:aws:iam::123456789012:instance-profile/gigatile-node")

    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert count() == before
    assert (request["ImageId"], request["InstanceType"], request["MinCount"], request["MaxCount"]) == \
        ("ami-0c1d2e3f4a5b6c7d8", "c6i.large", 1, 1)
    assert request["IamInstanceProfile"] == {"Arn": "arn:aws:iam::123456789012:instance-profile/gigatile-node"}
    assert request["UserData"].startswith("#cloud-config\n")
    assert parse_user_data(request["UserData"].encode()).bucket == "zoomii-tiles"


@pytest.mark.parametrize(("args", "message"), [
    (["--bucket", "zoomii-tiles"], "--image-id is required"),
    (["--image-id", "ami-1"], "--bucket (or GIGATILE_BUCKET) is required"),
    (["--bucket", "zoomii-tiles", "--image-id", "ami-1", "--tag", "team"], "use KEY=VALUE"),
    (["--bucket", "zoomii-tiles", "--image-id", "ami-1", "--instance-profile", "nobody"], "RunInstances failed"),
])
def test_launch_errors_are_clear(moto_ec2, ec2, args, message):
    done = launcher(moto_ec2, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
