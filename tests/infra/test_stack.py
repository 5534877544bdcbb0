"""The fleet's CloudFormation stack (infra/gigatile.yaml): cfn-lint clean, deployed by scripts/deploy_stack.sh
against moto's CloudFormation, and what it creates checked through the AWS APIs (moto)."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import boto3
import pytest
from cfnlint.decode import decode

from bootstrap.node.userdata import NodeConfig, parse_user_data, render_user_data
from tests.processes import BIN, Process, free_port, http_ok, wait_for

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "gigatile.yaml"
DEPLOY = REPO / "scripts" / "deploy_stack.sh"
BUCKET = "zoomii-tiles-test"


def test_the_template_is_cfn_lint_clean():
    done = subprocess.run([str(BIN / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def template() -> dict:
    doc, problems = decode(str(TEMPLATE))
    assert not problems
    return doc["Resources"]


def test_cloudfront_keeps_versioned_tiles_a_year_and_nothing_else_long():
    resources = template()
    config = resources["Distribution"]["Properties"]["DistributionConfig"]
    policies = {name: resources[name]["Properties"]["CachePolicyConfig"] for name, r in resources.items()
                if r["Type"] == "AWS::CloudFront::CachePolicy"}
    tiles = next(b for b in config["CacheBehaviors"] if b["PathPattern"] == "/tiles/*")
    tile_policy = policies[tiles["CachePolicyId"]["Ref"]]
    # the origin's Cache-Control decides (a year only for ?v= equal to the tile's version), keyed on ?v= alone
    assert tile_policy["DefaultTTL"] == 0 and tile_policy["MaxTTL"] == 31536000
    keys = tile_policy["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"]
    assert keys == {"QueryStringBehavior": "whitelist", "QueryStrings": ["v"]}
    default = policies[config["DefaultCacheBehavior"]["CachePolicyId"]["Ref"]]
    assert default["MaxTTL"] <= 60 and default["DefaultTTL"] == 0
    operator = next(b for b in config["CacheBehaviors"] if b["PathPattern"] == "/proxy/*")
    assert policies[operator["CachePolicyId"]["Ref"]]["MaxTTL"] == 0


def test_nodes_scale_on_cpu_and_leave_through_a_termination_hook():
    resources = template()
    policy = resources["NodeCpuScaling"]["Properties"]
    assert policy["AutoScalingGroupName"] == {"Ref": "NodeGroup"}
    assert policy["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"] \
        == "ASGAverageCPUUtilization"
    hooks = resources["NodeGroup"]["Properties"]["LifecycleHookSpecificationList"]
    assert [h["LifecycleTransition"] for h in hooks] == ["autoscaling:EC2_INSTANCE_TERMINATING"]


# --- deployed on moto -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[dict[str, str]]:
    port = free_port()
    server = Process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                     tmp_path_factory.mktemp("moto-cfn") / "moto.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: not server.alive() or http_ok(f"{url}/moto-api/data.json"), 30, "moto_server")
        assert server.alive(), server.output()[-2000:]
        yield {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        server.stop()


def aws(moto: dict[str, str], service: str):
    return boto3.client(service, endpoint_url=moto["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def deploy(moto: dict[str, str], subnets: list[str], vpc: str, ami: str, *extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", **moto}
    args = [str(DEPLOY), "deploy", "--stack-name", "gigatile-test", "--bucket", BUCKET, "--dataset", "covers",
            "--image-id", ami, "--vpc-id", vpc, "--vpc-cidr", "172.31.0.0/16",
            *[a for s in subnets for a in ("--subnet-id", s)], *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def test_the_stack_deploys_and_creates_the_fleet(moto):
    ec2 = aws(moto, "ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    done = deploy(moto, subnets, vpc, ami, "--node-type", "c6i.xlarge", "--node-min", "2", "--node-max", "6",
                  "--node-count", "3", "--proxy-count", "2")
    assert done.returncode == 0, done.stderr
    assert f"BucketName: {BUCKET}" in done.stdout

    cfn = aws(moto, "cloudformation")
    assert cfn.describe_stacks(StackName="gigatile-test")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    made = {r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName="gigatile-test")["StackResourceSummaries"]}

    assert BUCKET in [b["Name"] for b in aws(moto, "s3").list_buckets()["Buckets"]]

    # the node's role: exactly the policy bootstrap/README.md lists
    iam = aws(moto, "iam")
    node_policy = iam.get_role_policy(RoleName=made["NodeRole"], PolicyName="gigatile-node")["PolicyDocument"]
    if isinstance(node_policy, str):  # moto keeps what CloudFormation handed it: the template's mapping, as text
        node_policy = ast.literal_eval(unquote(node_policy))
    granted = {(action, resource) for st in node_policy["Statement"]
               for action in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
               for resource in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])}
    arn = f"arn:aws:s3:::{BUCKET}"
    assert granted == {("s3:GetObject", f"{arn}/data/*"), ("s3:GetObject", f"{arn}/releases/*"),
                       ("s3:GetObject", f"{arn}/bootstrap/*"), ("s3:PutObject", f"{arn}/proxy/*"),
                       ("s3:PutObject", f"{arn}/logs/*"), ("s3:DeleteObject", f"{arn}/proxy/*"),
                       ("s3:DeleteObject", f"{arn}/logs/*"), ("s3:ListBucket", arn)}

    # the launch template: IMDSv2 only, the user-data rendered by bootstrap/node/userdata.py
    version = ec2.describe_launch_template_versions(LaunchTemplateId=made["NodeLaunchTemplate"])
    data = version["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["InstanceType"] == "c6i.xlarge" and data["ImageId"] == ami
    user_data = base64.b64decode(data["UserData"]).decode()
    # the tile-proxies in the VPC are the nodes' trusted proxies (their forwarding headers make the IIIF ids)
    assert user_data == render_user_data(NodeConfig(bucket=BUCKET, datasets=("covers",),
                                                    trusted_proxies="172.31.0.0/16"))  # deploy's --vpc-cidr
    assert parse_user_data(user_data).bucket == BUCKET

    # the groups: nodes sized as asked, proxies behind the load balancer's target group
    autoscaling = aws(moto, "autoscaling")
    groups = {g["AutoScalingGroupName"]: g for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]}
    nodes, proxies = groups[made["NodeGroup"]], groups[made["ProxyGroup"]]
    assert (nodes["MinSize"], nodes["MaxSize"], nodes["DesiredCapacity"]) == (2, 6, 3)
    assert nodes["LaunchTemplate"]["LaunchTemplateId"] == made["NodeLaunchTemplate"]
    assert len(nodes["Instances"]) == 3
    assert proxies["DesiredCapacity"] == 2 and proxies["TargetGroupARNs"] == [made["ProxyTargetGroup"]]

    elb = aws(moto, "elbv2")
    target_group = elb.describe_target_groups(TargetGroupArns=[made["ProxyTargetGroup"]])["TargetGroups"][0]
    assert target_group["HealthCheckPath"] == "/healthz"
    listener = elb.describe_listeners(LoadBalancerArn=made["LoadBalancer"])["Listeners"][0]
    assert listener["DefaultActions"][0]["TargetGroupArn"] == made["ProxyTargetGroup"]

    # nodes accept traffic from the proxies only, proxies from the load balancer only
    groups_by_id = {g["GroupId"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    node_rule = groups_by_id[made["NodeSecurityGroup"]]["IpPermissions"][0]
    assert node_rule["FromPort"] == 8080 and node_rule["IpRanges"] == []
    assert [p["GroupId"] for p in node_rule["UserIdGroupPairs"]] == [made["ProxySecurityGroup"]]

    # parameters as deploy_stack.sh passed them
    parameters = {p["ParameterKey"]: p["ParameterValue"]
                  for p in cfn.describe_stacks(StackName="gigatile-test")["Stacks"][0]["Parameters"]}
    assert json.loads(parameters["NodeUserData"])["datasets"] == ["covers"]
