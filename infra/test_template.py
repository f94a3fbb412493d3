#!/usr/bin/env python3
"""Structural tests of infra/template.yaml against the Cargo workspace.

What cfn-lint and checkov cannot know: which Rust binary serves which route, that the four
workspace binaries are all deployed, that only ws-default may post to connections, and that the
template keeps the Route -> Integration -> Function -> BuildProperties.Binary shape other tests
walk. Run by infra/check.sh with the venv that has cfn-lint (its YAML decoder understands the
short-form tags !Sub, !Ref, ...) and aws-sam-translator:

    .venv-infra/sam/bin/python infra/test_template.py

Prints one line per test and ends with "N passed, M failed"; exits non-zero on any failure.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import tomllib
import unittest
from pathlib import Path

from cfnlint.decode import decode

INFRA = Path(__file__).resolve().parent
REPO_ROOT = INFRA.parent
TEMPLATE = INFRA / "template.yaml"

# The route table the template must implement, and the binary behind each route.
ROUTE_BINARIES = {"$connect": "ws-connect", "$disconnect": "ws-disconnect", "$default": "ws-default"}
AUTHORIZER_BINARY = "ws-authorize"
# No route: invoked asynchronously by ws-default with the shards of a big room's fan-out.
FANOUT_BINARY = "ws-fanout"

ARN_PREFIX = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/"
INTEGRATION_URI = re.compile(
    r"^arn:\$\{AWS::Partition\}:apigateway:\$\{AWS::Region\}:lambda:path/2015-03-31/functions/"
    r"\$\{(?P<function>[A-Za-z0-9]+)\.Arn\}/invocations$"
)
ROUTE_TARGET = re.compile(r"^integrations/\$\{(?P<integration>[A-Za-z0-9]+)\}$")


def load_template() -> dict:
    template, matches = decode(str(TEMPLATE))
    if matches:
        raise AssertionError(f"{TEMPLATE} does not parse: {[str(m) for m in matches]}")
    # Plain dicts and strs from here on (the decoder returns str/dict subclasses with line marks).
    return json.loads(json.dumps(template))


def sub_string(value) -> str:
    """The format string of a !Sub (short or long form), or the string itself."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        inner = value["Fn::Sub"]
        return inner if isinstance(inner, str) else inner[0]
    if isinstance(value, str):
        return value
    raise AssertionError(f"expected a string or !Sub, got {value!r}")


def workspace_binaries() -> dict[str, Path]:
    """Binary name -> crate directory, for every member of the workspace under functions/."""
    root = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
    members = root["workspace"]["members"]
    found: dict[str, Path] = {}
    for member in members:
        if not member.startswith("functions/"):
            continue
        manifest = tomllib.loads((REPO_ROOT / member / "Cargo.toml").read_text())
        # A package with no [[bin]] table has one binary named after the package (src/main.rs).
        bins = [b["name"] for b in manifest.get("bin", [])] or [manifest["package"]["name"]]
        for name in bins:
            found[name] = REPO_ROOT / member
    return found


def resources_of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def effective_function_properties(template: dict, logical_id: str) -> dict:
    """A function's properties with Globals.Function applied (Environment variables merged)."""
    props = copy.deepcopy(template.get("Globals", {}).get("Function", {}))
    own = template["Resources"][logical_id]["Properties"]
    for key, value in own.items():
        if key == "Environment" and "Environment" in props:
            merged = dict(props["Environment"].get("Variables", {}))
            merged.update(value.get("Variables", {}))
            props["Environment"] = {"Variables": merged}
        else:
            props[key] = value
    return props


def iter_statements(policy_document: dict):
    for statement in policy_document.get("Statement", []):
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            for branch in statement["Fn::If"][1:]:
                if isinstance(branch, dict) and branch != {"Ref": "AWS::NoValue"}:
                    yield branch
        else:
            yield statement


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


class TemplateTest(unittest.TestCase):
    template: dict
    functions: dict[str, dict]
    binaries: dict[str, Path]

    @classmethod
    def setUpClass(cls):
        cls.template = load_template()
        cls.functions = resources_of_type(cls.template, "AWS::Serverless::Function")
        cls.binaries = workspace_binaries()

    # --- helpers -------------------------------------------------------------------------------
    def binary_of(self, function_id: str) -> str:
        metadata = self.functions[function_id].get("Metadata", {})
        self.assertEqual(metadata.get("BuildMethod"), "rust-cargolambda", function_id)
        return metadata["BuildProperties"]["Binary"]

    def function_by_binary(self, binary: str) -> str:
        ids = [fid for fid in self.functions if self.binary_of(fid) == binary]
        self.assertEqual(len(ids), 1, f"exactly one function must build {binary}, found {ids}")
        return ids[0]

    def function_behind_uri(self, uri) -> str:
        match = INTEGRATION_URI.match(sub_string(uri))
        self.assertIsNotNone(match, f"unexpected Lambda invocation URI {uri!r}")
        function_id = match["function"]
        self.assertIn(function_id, self.functions)
        return function_id

    def role_of(self, function_id: str) -> str:
        role = self.functions[function_id]["Properties"].get("Role")
        self.assertEqual(list(role), ["Fn::GetAtt"], f"{function_id} must use an explicit role")
        role_id, attribute = role["Fn::GetAtt"]
        self.assertEqual(attribute, "Arn")
        return role_id

    def allow_statements_by_resource(self):
        """(logical id, statement) for every Allow statement in roles and managed policies."""
        resources = self.template["Resources"]
        for rid, res in resources.items():
            documents = []
            if res["Type"] == "AWS::IAM::Role":
                documents = [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]
            elif res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                documents = [res["Properties"]["PolicyDocument"]]
            for document in documents:
                for statement in iter_statements(document):
                    if statement["Effect"] == "Allow":
                        yield rid, statement

    def policies_attached_to(self, role_id: str) -> set[str]:
        """Logical ids of template managed policies a role may have attached."""
        attached = set()
        for arn in self.template["Resources"][role_id]["Properties"].get("ManagedPolicyArns", []):
            for candidate in (arn["Fn::If"][1:] if isinstance(arn, dict) and "Fn::If" in arn else [arn]):
                if isinstance(candidate, dict) and set(candidate) == {"Ref"} and candidate["Ref"] in self.template["Resources"]:
                    attached.add(candidate["Ref"])
        return attached

    # --- the route table -----------------------------------------------------------------------
    def test_routes_are_exactly_connect_disconnect_default(self):
        routes = resources_of_type(self.template, "AWS::ApiGatewayV2::Route")
        keys = sorted(r["Properties"]["RouteKey"] for r in routes.values())
        self.assertEqual(keys, sorted(ROUTE_BINARIES))

    def test_each_route_reaches_the_function_that_builds_its_binary(self):
        routes = resources_of_type(self.template, "AWS::ApiGatewayV2::Route")
        for rid, route in routes.items():
            props = route["Properties"]
            target = ROUTE_TARGET.match(sub_string(props["Target"]))
            self.assertIsNotNone(target, f"{rid}.Target must be !Sub integrations/${{X}}")
            integration = self.template["Resources"][target["integration"]]
            self.assertEqual(integration["Type"], "AWS::ApiGatewayV2::Integration")
            iprops = integration["Properties"]
            self.assertEqual(iprops["IntegrationType"], "AWS_PROXY", rid)
            self.assertEqual(iprops["IntegrationMethod"], "POST", rid)
            self.assertEqual(iprops["ApiId"], {"Ref": "Api"}, rid)
            function_id = self.function_behind_uri(iprops["IntegrationUri"])
            self.assertEqual(self.binary_of(function_id), ROUTE_BINARIES[props["RouteKey"]], rid)

    def test_api_is_a_websocket_api_routing_on_action(self):
        api = self.template["Resources"]["Api"]
        self.assertEqual(api["Type"], "AWS::ApiGatewayV2::Api")
        self.assertEqual(api["Properties"]["ProtocolType"], "WEBSOCKET")
        self.assertEqual(api["Properties"]["RouteSelectionExpression"], "$request.body.action")

    # --- functions against the Cargo workspace -------------------------------------------------
    def test_workspace_has_the_five_expected_binaries(self):
        expected = set(ROUTE_BINARIES.values()) | {AUTHORIZER_BINARY, FANOUT_BINARY}
        self.assertEqual(set(self.binaries), expected)

    def test_every_function_builds_a_workspace_binary_and_every_binary_is_deployed(self):
        built = [self.binary_of(fid) for fid in self.functions]
        self.assertEqual(len(built), len(set(built)), f"two functions build the same binary: {built}")
        self.assertEqual(set(built), set(self.binaries))

    def test_functions_run_the_bootstrap_on_provided_al2023_for_the_chosen_architecture(self):
        parameter = self.template["Parameters"]["Architecture"]
        self.assertEqual(sorted(parameter["AllowedValues"]), ["arm64", "x86_64"])
        self.assertEqual(parameter["Default"], "arm64")
        for fid in self.functions:
            props = effective_function_properties(self.template, fid)
            self.assertEqual(props["Runtime"], "provided.al2023", fid)
            self.assertEqual(props["Handler"], "bootstrap", fid)
            self.assertEqual(props["Architectures"], [{"Ref": "Architecture"}], fid)
            for key in ("MemorySize", "Timeout", "ReservedConcurrentExecutions"):
                self.assertIn(key, props, f"{fid}.{key}")

    def test_code_uri_is_the_cargo_workspace_root(self):
        for fid in self.functions:
            code_uri = effective_function_properties(self.template, fid)["CodeUri"]
            root = (TEMPLATE.parent / code_uri).resolve()
            self.assertEqual(root, REPO_ROOT, fid)
            self.assertIn("workspace", tomllib.loads((root / "Cargo.toml").read_text()), fid)

    def test_environment_variables(self):
        redis = {"REDIS_URL", "REDIS_URL_SECRET_ARN", "REDIS_AUTH_SECRET_ARN", "REDIS_CLUSTER", "REDIS_KEY_PREFIX",
                 "MEMBERSHIP_TTL_SECS"}
        # Sign-in: every function reads the same settings (Globals); only the authorizer may read an HS256 key.
        auth = {"RUST_LOG", "METRICS_NAMESPACE", "AUTH_MODE", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_CLIENT_ID", "AUTH_JWKS_URL",
                "AUTH_ROOMS_CLAIM"}
        expected = {
            "ws-authorize": auth | {"AUTH_HS256_SECRET_ARN"},
            "ws-connect": auth | {"ALLOWED_ORIGINS", "MAX_ROOM_MEMBERS", "WS_MANAGEMENT_ENDPOINT",
                                  "CONNECT_RATE_PER_IP", "MAX_CONNECTIONS_PER_IP"} | redis,
            "ws-disconnect": auth | {"WS_MANAGEMENT_ENDPOINT"} | redis,
            "ws-fanout": auth | {"WS_MANAGEMENT_ENDPOINT", "FANOUT_MAX_IN_FLIGHT", "PRUNE_GRACE_SECS"} | redis,
            "ws-default": auth | {"WS_MANAGEMENT_ENDPOINT", "FANOUT_MAX_IN_FLIGHT", "FANOUT_FUNCTION", "FANOUT_SHARD_SIZE",
                                  "HISTORY_MAX_MESSAGES",
                                  "HISTORY_TTL_SECS", "MAX_ROOM_MEMBERS", "RATE_LIMIT_PER_SEC", "RATE_LIMIT_BURST",
                                  "PRUNE_GRACE_SECS", "FRAME_RATE_PER_SEC", "FRAME_BURST", "MAX_MESSAGE_BYTES",
                                  "HISTORY_PAGE_BYTES", "HISTORY_MAX_BYTES"} | redis,
        }
        for fid in self.functions:
            variables = effective_function_properties(self.template, fid)["Environment"]["Variables"]
            self.assertEqual(set(variables), expected[self.binary_of(fid)], fid)
        for binary in ("ws-connect", "ws-disconnect", "ws-default"):
            function = effective_function_properties(self.template, self.function_by_binary(binary))
            endpoint = sub_string(function["Environment"]["Variables"]["WS_MANAGEMENT_ENDPOINT"])
            self.assertEqual(endpoint, "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}", binary)

    def test_only_redis_functions_join_the_vpc_and_only_in_elasticache_mode(self):
        for fid in self.functions:
            vpc = self.functions[fid]["Properties"].get("VpcConfig")
            if self.binary_of(fid) == AUTHORIZER_BINARY:
                self.assertIsNone(vpc, "the authorizer needs no VPC")
                continue
            self.assertEqual(list(vpc), ["Fn::If"], fid)
            condition, attached, detached = vpc["Fn::If"]
            self.assertEqual(condition, "IsElastiCache", fid)
            self.assertEqual(detached, {"Ref": "AWS::NoValue"}, fid)
            self.assertEqual(attached["SubnetIds"], [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}], fid)

    # --- the authorizer ------------------------------------------------------------------------
    def test_authorizer_is_a_request_authorizer_on_connect_only(self):
        authorizers = resources_of_type(self.template, "AWS::ApiGatewayV2::Authorizer")
        self.assertEqual(len(authorizers), 1)
        (aid, authorizer), = authorizers.items()
        props = authorizer["Properties"]
        self.assertEqual(props["AuthorizerType"], "REQUEST")
        self.assertEqual(self.binary_of(self.function_behind_uri(props["AuthorizerUri"])), AUTHORIZER_BINARY)
        # Deliberately no identity source: a missing room must reach ws-connect (400), not 401.
        self.assertNotIn("IdentitySource", props)
        for rid, route in resources_of_type(self.template, "AWS::ApiGatewayV2::Route").items():
            rprops = route["Properties"]
            if rprops["RouteKey"] == "$connect":
                self.assertEqual(rprops["AuthorizationType"], "CUSTOM", rid)
                self.assertEqual(rprops["AuthorizerId"], {"Ref": aid}, rid)
            else:
                self.assertIn(rprops.get("AuthorizationType", "NONE"), ("NONE",), rid)
                self.assertNotIn("AuthorizerId", rprops, rid)

    # --- who may invoke what -------------------------------------------------------------------
    def test_every_function_has_one_permission_scoped_to_its_route_of_this_api(self):
        permissions = resources_of_type(self.template, "AWS::Lambda::Permission")
        by_function: dict[str, list[str]] = {}
        for pid, permission in permissions.items():
            props = permission["Properties"]
            self.assertEqual(props["Action"], "lambda:InvokeFunction", pid)
            self.assertEqual(props["Principal"], "apigateway.amazonaws.com", pid)
            function_id = props["FunctionName"]["Fn::GetAtt"][0]
            source_arn = sub_string(props["SourceArn"])
            self.assertTrue(source_arn.startswith(ARN_PREFIX), f"{pid}: {source_arn}")
            by_function.setdefault(function_id, []).append(source_arn[len(ARN_PREFIX):])
        api_invoked = {fid for fid in self.functions if self.binary_of(fid) != FANOUT_BINARY}
        self.assertEqual(set(by_function), api_invoked, "API Gateway invokes every function but ws-fanout")
        for function_id, suffixes in by_function.items():
            self.assertEqual(len(suffixes), 1, function_id)
            binary = self.binary_of(function_id)
            if binary == AUTHORIZER_BINARY:
                self.assertEqual(suffixes[0], "authorizers/${ConnectAuthorizer}")
            else:
                route = next(k for k, v in ROUTE_BINARIES.items() if v == binary)
                self.assertEqual(suffixes[0], "${StageName}/" + route)

    # --- least privilege -----------------------------------------------------------------------
    def test_no_allow_statement_has_a_wildcard_action(self):
        for rid, statement in self.allow_statements_by_resource():
            for action in as_list(statement["Action"]):
                self.assertNotIn("*", action, f"{rid}: {action}")

    def test_only_the_route_functions_may_manage_connections_and_only_post_on_this_stage(self):
        connections = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/${StageName}/%s/@connections/*"
        holders = {}
        for rid, statement in self.allow_statements_by_resource():
            if "execute-api:ManageConnections" in as_list(statement["Action"]):
                holders[rid] = sorted(sub_string(r) for r in as_list(statement["Resource"]))
        # ws-default posts the chat and closes a connection far past its budget; ws-connect and ws-disconnect post
        # presence events; the authorizer never posts.
        role = lambda binary: self.role_of(self.function_by_binary(binary))
        self.assertEqual(
            holders,
            {
                role("ws-connect"): [connections % "POST"],
                role("ws-disconnect"): [connections % "POST"],
                role("ws-default"): sorted([connections % "DELETE", connections % "POST"]),
                role("ws-fanout"): [connections % "POST"],
            },
        )

    def test_secret_read_is_one_secret_each_and_the_redis_url_only_for_the_redis_functions(self):
        readers = {}
        for rid, statement in self.allow_statements_by_resource():
            if "secretsmanager:GetSecretValue" in as_list(statement["Action"]):
                self.assertNotIn("*", json.dumps(statement["Resource"]), rid)
                readers[rid] = statement["Resource"]
        self.assertEqual(
            readers,
            {
                "RedisUrlSecretReadPolicy": {
                    "Fn::If": ["UseExistingRedisUrlSecret", {"Ref": "RedisUrlSecretArn"}, {"Ref": "RedisUrlSecret"}]
                },
                "AuthHs256SecretReadPolicy": {"Ref": "AuthHs256SecretArn"},
                "CacheUserSecretReadPolicy": {"Ref": "CacheUserSecret"},
            },
        )
        for fid in self.functions:
            for policy in ("RedisUrlSecretReadPolicy", "CacheUserSecretReadPolicy"):
                attached = policy in self.policies_attached_to(self.role_of(fid))
                self.assertEqual(attached, self.binary_of(fid) != AUTHORIZER_BINARY, (fid, policy))
        # The HS256 key is the authorizer's alone, and only when one is given.
        hs256 = self.template["Resources"]["AuthHs256SecretReadPolicy"]
        self.assertEqual(hs256["Condition"], "ReadsAuthHs256Secret")
        self.assertEqual(hs256["Properties"]["Roles"], [{"Ref": self.role_of(self.function_by_binary(AUTHORIZER_BINARY))}])

    def test_functions_write_only_their_own_log_group(self):
        for fid in self.functions:
            props = effective_function_properties(self.template, fid)
            log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
            self.assertEqual(self.template["Resources"][log_group]["Type"], "AWS::Logs::LogGroup")
            self.assertIn("RetentionInDays", self.template["Resources"][log_group]["Properties"])
            role = self.template["Resources"][self.role_of(fid)]
            log_statements = [
                s
                for p in role["Properties"]["Policies"]
                for s in iter_statements(p["PolicyDocument"])
                if any(a.startswith("logs:") for a in as_list(s["Action"]))
            ]
            self.assertEqual([s["Resource"] for s in log_statements], [{"Fn::GetAtt": [log_group, "Arn"]}], fid)

    # --- the static site -----------------------------------------------------------------------
    def test_site_bucket_is_readable_only_by_this_distribution(self):
        policy = self.template["Resources"]["SiteBucketPolicy"]["Properties"]["PolicyDocument"]
        allows = [s for s in iter_statements(policy) if s["Effect"] == "Allow"]
        self.assertEqual(len(allows), 1)
        (allow,) = allows
        self.assertEqual(allow["Principal"], {"Service": "cloudfront.amazonaws.com"})
        self.assertEqual(allow["Action"], "s3:GetObject")
        self.assertEqual(
            sub_string(allow["Condition"]["StringEquals"]["AWS:SourceArn"]),
            "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${SiteDistribution}",
        )
        block = self.template["Resources"]["SiteBucket"]["Properties"]["PublicAccessBlockConfiguration"]
        self.assertTrue(all(block.values()) and len(block) == 4)

    def test_distribution_uses_oac_https_and_the_security_headers(self):
        config = self.template["Resources"]["SiteDistribution"]["Properties"]["DistributionConfig"]
        (origin,) = config["Origins"]
        self.assertEqual(origin["OriginAccessControlId"], {"Fn::GetAtt": ["SiteOriginAccessControl", "Id"]})
        self.assertEqual(config["DefaultRootObject"], "index.html")
        behavior = config["DefaultCacheBehavior"]
        self.assertEqual(behavior["ViewerProtocolPolicy"], "redirect-to-https")
        self.assertEqual(behavior["ResponseHeadersPolicyId"], {"Ref": "SiteResponseHeadersPolicy"})
        headers = self.template["Resources"]["SiteResponseHeadersPolicy"]["Properties"]
        security = headers["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
        csp = sub_string(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
        self.assertIn("connect-src 'self' wss://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}", csp)
        for header in ("StrictTransportSecurity", "ContentTypeOptions", "FrameOptions", "ReferrerPolicy"):
            self.assertTrue(security[header]["Override"], header)

    # --- outputs, skips, and the SAM transform -------------------------------------------------
    def test_outputs_deploy_sh_relies_on(self):
        outputs = self.template["Outputs"]
        for name in ("WebSocketUrl", "ManagementEndpoint", "SiteUrl", "SiteBucketName", "LogsBucketName", "DistributionId",
                     "MaxMessageBytes", "AuthIssuer", "AuthClientId"):
            self.assertIn(name, outputs)
        self.assertEqual(outputs["AuthIssuer"]["Condition"], "AuthRequired")
        self.assertEqual(sub_string(outputs["WebSocketUrl"]["Value"]), "${Api.ApiEndpoint}/${Stage}")

    def test_cognito_signs_in_a_public_client_with_the_code_flow_back_to_the_site_only(self):
        client = self.template["Resources"]["UserPoolClient"]
        self.assertEqual(client["Condition"], "IsCognito")
        props = client["Properties"]
        self.assertFalse(props["GenerateSecret"], "a page cannot keep a secret")
        self.assertEqual(props["AllowedOAuthFlows"], ["code"])
        site = "https://${SiteDistribution.DomainName}/index.html"
        self.assertEqual([sub_string(u) for u in props["CallbackURLs"]], [site])
        self.assertEqual([sub_string(u) for u in props["LogoutURLs"]], [site])
        issuer = self.template["Globals"]["Function"]["Environment"]["Variables"]["AUTH_ISSUER"]
        self.assertEqual(sub_string(issuer["Fn::If"][1]), "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}")

    # --- operating it: metrics, alarms, dashboard, safe defaults ---------------------------------
    def alarm(self, logical_id: str) -> dict:
        resource = self.template["Resources"].get(logical_id)
        self.assertIsNotNone(resource, f"no alarm {logical_id}")
        self.assertEqual(resource["Type"], "AWS::CloudWatch::Alarm", logical_id)
        props = resource["Properties"]
        # Every alarm notifies the topic this stack makes for the e-mail and the topic given, and its recovery.
        expected = [
            {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AWS::NoValue"}]},
            {"Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]},
        ]
        self.assertEqual(props["AlarmActions"], expected, logical_id)
        self.assertEqual(props["OKActions"], expected, logical_id)
        self.assertEqual(props["TreatMissingData"], "notBreaching", logical_id)
        self.assertEqual(props["ComparisonOperator"], "GreaterThanOrEqualToThreshold", logical_id)
        self.assertIn("docs/operating.md", sub_string(props["AlarmDescription"]), logical_id)
        return resource

    def metric_of(self, props: dict, metric_id: str | None = None) -> tuple[str, str, dict, str, int]:
        """(namespace, metric, dimensions, statistic, period) of a plain alarm, or of one metric of a math alarm."""
        if metric_id is None:
            dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            return props["Namespace"], props["MetricName"], dims, props["Statistic"], props["Period"]
        (query,) = [m for m in props["Metrics"] if m["Id"] == metric_id]
        stat = query["MetricStat"]
        dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        return stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], dims, stat["Stat"], stat["Period"]

    def expression_of(self, props: dict) -> str:
        (returned,) = [m for m in props["Metrics"] if m.get("ReturnData")]
        return sub_string(returned["Expression"])

    def test_each_route_function_and_the_fan_out_alarm_on_any_error_in_five_minutes(self):
        for logical_id, function in (("ConnectErrorsAlarm", "ConnectFunction"),
                                     ("DisconnectErrorsAlarm", "DisconnectFunction"),
                                     ("DefaultErrorsAlarm", "DefaultFunction"),
                                     ("FanoutErrorsAlarm", "FanoutFunction")):
            props = self.alarm(logical_id)["Properties"]
            self.assertEqual(self.metric_of(props),
                             ("AWS/Lambda", "Errors", {"FunctionName": {"Ref": function}}, "Sum", 300), logical_id)
            self.assertEqual(props["Threshold"], 1, logical_id)

    def test_the_authorizer_alarms_on_errors_other_than_the_unauthorized_it_answers_bad_tokens_with(self):
        props = self.alarm("AuthorizeErrorsAlarm")["Properties"]
        self.assertEqual(self.expression_of(props), "errors - FILL(unauthorized, 0)")
        self.assertEqual(self.metric_of(props, "errors"),
                         ("AWS/Lambda", "Errors", {"FunctionName": {"Ref": "AuthorizeFunction"}}, "Sum", 300))
        namespace, metric, dims, stat, period = self.metric_of(props, "unauthorized")
        self.assertEqual(sub_string(namespace), "wschat/${AWS::StackName}")
        self.assertEqual((metric, dims, stat, period), ("HandshakesUnauthorized", {"Function": "ws-authorize"}, "Sum", 300))
        self.assertEqual(props["Threshold"], 1)

    def test_a_throttle_of_any_function_raises_the_throttles_alarm(self):
        props = self.alarm("FunctionThrottlesAlarm")["Properties"]
        functions = set()
        for query in props["Metrics"]:
            if query.get("ReturnData"):
                continue
            namespace, metric, dims, stat, period = self.metric_of(props, query["Id"])
            self.assertEqual((namespace, metric, stat, period), ("AWS/Lambda", "Throttles", "Sum", 300))
            self.assertIn(query["Id"], self.expression_of(props))
            functions.add(dims["FunctionName"]["Ref"])
        self.assertEqual(functions, set(self.functions))
        self.assertEqual(props["Threshold"], 1)

    def test_api_gateway_execution_and_integration_errors_each_have_an_alarm(self):
        stage = {"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "StageName"}}
        execution = self.alarm("ApiExecutionErrorsAlarm")["Properties"]
        self.assertEqual(self.metric_of(execution), ("AWS/ApiGateway", "ExecutionError", stage, "Sum", 300))
        self.assertEqual(execution["Threshold"], 1)
        integration = self.alarm("ApiIntegrationErrorsAlarm")["Properties"]
        self.assertEqual(self.metric_of(integration), ("AWS/ApiGateway", "IntegrationError", stage, "Sum", 300))
        self.assertEqual(integration["Threshold"], {"Ref": "IntegrationErrorsAlarmThreshold"})

    def test_a_spike_of_refused_frames_raises_an_alarm_on_the_functions_own_metric(self):
        props = self.alarm("RefusedFramesAlarm")["Properties"]
        namespace, metric, dims, stat, period = self.metric_of(props)
        self.assertEqual(sub_string(namespace), "wschat/${AWS::StackName}")
        self.assertEqual((metric, dims, stat, period), ("FramesRefused", {"Function": "ws-default"}, "Sum", 300))
        self.assertEqual(props["Threshold"], {"Ref": "RefusedFramesAlarmThreshold"})
        # The functions write that namespace.
        for fid in self.functions:
            variables = effective_function_properties(self.template, fid)["Environment"]["Variables"]
            self.assertEqual(sub_string(variables["METRICS_NAMESPACE"]), "wschat/${AWS::StackName}", fid)

    def test_the_cache_alarms_at_three_quarters_of_its_caps_and_at_any_eviction(self):
        cache = {"clusterId": {"Ref": "Cache"}}
        storage = self.alarm("CacheStorageAlarm")
        self.assertEqual(storage["Condition"], "IsElastiCache")
        props = storage["Properties"]
        self.assertEqual(self.expression_of(props), "100 * stored / (${CacheMaxDataStorageGB} * 1073741824)")
        self.assertEqual(self.metric_of(props, "stored"), ("AWS/ElastiCache", "BytesUsedForCache", cache, "Maximum", 60))
        self.assertEqual(props["Threshold"], 75)
        ecpu = self.alarm("CacheEcpuAlarm")
        self.assertEqual(ecpu["Condition"], "IsElastiCache")
        props = ecpu["Properties"]
        self.assertEqual(self.expression_of(props), "100 * (ecpus / 60) / ${CacheMaxEcpuPerSecond}")
        self.assertEqual(self.metric_of(props, "ecpus"),
                         ("AWS/ElastiCache", "ElastiCacheProcessingUnits", cache, "Sum", 60))
        self.assertEqual(props["Threshold"], 75)
        evictions = self.alarm("CacheEvictionsAlarm")
        self.assertEqual(evictions["Condition"], "IsElastiCache")
        self.assertEqual(self.metric_of(evictions["Properties"]), ("AWS/ElastiCache", "Evictions", cache, "Sum", 60))
        self.assertEqual(evictions["Properties"]["Threshold"], 1)

    def test_the_alarms_are_exactly_those_the_docs_explain(self):
        alarms = set(resources_of_type(self.template, "AWS::CloudWatch::Alarm"))
        runbook = (REPO_ROOT / "docs" / "operating.md").read_text()
        for logical_id in alarms:
            self.alarm(logical_id)
            self.assertIn(f"`{logical_id}`", runbook, f"docs/operating.md explains {logical_id}")
        self.assertEqual(len(alarms), 12)

    def test_the_e_mail_gets_a_topic_that_only_this_account_s_alarms_publish_to(self):
        resources = self.template["Resources"]
        self.assertEqual(resources["AlarmTopic"]["Condition"], "CreateAlarmTopic")
        subscription = resources["AlarmEmailSubscription"]["Properties"]
        self.assertEqual((subscription["Protocol"], subscription["Endpoint"]), ("email", {"Ref": "AlarmEmail"}))
        (statement,) = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        self.assertEqual(statement["Principal"], {"Service": "cloudwatch.amazonaws.com"})
        self.assertEqual(statement["Action"], "sns:Publish")
        self.assertEqual(statement["Condition"], {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}})

    def test_the_dashboard_shows_the_api_the_functions_their_metrics_the_cache_and_the_alarms(self):
        body = self.template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Join"][1]
        common = json.loads("{" + '"widgets":[' + sub_string(body[1]) + "]}")["widgets"]
        cache_if = body[2]["Fn::If"]
        self.assertEqual(cache_if[0], "IsElastiCache")
        cache = json.loads('{"widgets":[' + sub_string(cache_if[1]).lstrip(",") + "]}")["widgets"]
        shown = set()
        for widget in common + cache:
            for metric in widget["properties"].get("metrics", []):
                shown.add((metric[0], metric[1]))
        for wanted in [("AWS/ApiGateway", m) for m in ("ConnectCount", "MessageCount", "ClientError",
                                                      "IntegrationError", "ExecutionError", "IntegrationLatency")] \
                + [("AWS/Lambda", m) for m in ("Errors", "Throttles", "Duration", "ConcurrentExecutions")] \
                + [("AWS/ElastiCache", m) for m in ("BytesUsedForCache", "ElastiCacheProcessingUnits", "Evictions")] \
                + [("wschat/${AWS::StackName}", m) for m in ("ChatMessages", "Deliveries", "PostsPruned",
                                                             "PostsThrottled", "PostsFailed", "FramesRefusedRate",
                                                             "FramesRefusedBudget", "FramesRefusedSize",
                                                             "FramesRefusedMalformed", "FramesRefusedAuth",
                                                             "HandshakesAccepted", "HandshakesRefused",
                                                             "HandshakesUnauthorized", "FanoutTime", "RedisTime",
                                                             "HistoryBytes")]:
            self.assertIn(wanted, shown)
        (alarm_widget,) = [w for w in common if w["type"] == "alarm"]
        unconditional = {rid for rid, res in resources_of_type(self.template, "AWS::CloudWatch::Alarm").items()
                         if "Condition" not in res}
        self.assertEqual({a.removeprefix("${").removesuffix(".Arn}") for a in alarm_widget["properties"]["alarms"]},
                         unconditional)

    def test_x_ray_is_a_parameter_and_its_writer_policy_comes_with_it(self):
        globals_ = self.template["Globals"]["Function"]
        self.assertEqual(globals_["Tracing"], {"Fn::If": ["TraceActive", "Active", "PassThrough"]})
        self.assertEqual(self.template["Parameters"]["Tracing"]["Default"], "off")
        for fid in self.functions:
            arns = json.dumps(self.template["Resources"][self.role_of(fid)]["Properties"]["ManagedPolicyArns"])
            self.assertIn('["TraceActive", {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"}', arns, fid)

    def test_the_account_wide_api_gateway_role_is_set_only_when_asked_for(self):
        resources = self.template["Resources"]
        self.assertEqual(self.template["Parameters"]["ApiGatewayLogging"]["Default"], "none")
        self.assertEqual(resources["ApiGatewayAccount"]["Condition"], "CreateApiGatewayRole")
        self.assertEqual(resources["ApiGatewayCloudWatchRole"]["Condition"], "CreateApiGatewayRole")
        self.assertEqual(self.template["Conditions"]["CreateApiGatewayRole"],
                         {"Fn::Equals": [{"Ref": "ApiGatewayLogging"}, "create-role"]})
        stage = resources["Stage"]["Properties"]
        self.assertEqual(stage["AccessLogSettings"]["Fn::If"][0], "ApiGatewayLogs")
        self.assertEqual(stage["AccessLogSettings"]["Fn::If"][2], {"Ref": "AWS::NoValue"})
        self.assertEqual(stage["DefaultRouteSettings"]["LoggingLevel"],
                         {"Fn::If": ["ApiGatewayLogs", {"Ref": "ExecutionLoggingLevel"}, "OFF"]})
        self.assertEqual(stage["DefaultRouteSettings"]["DataTraceEnabled"], False, "data tracing logs message bodies")

    def test_the_cache_admits_only_the_functions_user_on_the_stack_s_keys_without_dangerous_commands(self):
        resources = self.template["Resources"]
        cache = resources["Cache"]["Properties"]
        self.assertEqual(cache["UserGroupId"], {"Ref": "CacheUserGroup"})
        group = resources["CacheUserGroup"]["Properties"]
        self.assertEqual(group["UserIds"][0], {"Ref": "CacheUser"})
        user = resources["CacheUser"]["Properties"]
        self.assertEqual(sub_string(user["AccessString"]), "on ~${RedisKeyPrefix}* +@all -@dangerous +info")
        self.assertEqual(user["AuthenticationMode"]["Type"], "password")
        secret = resources["CacheUserSecret"]["Properties"]["GenerateSecretString"]
        self.assertEqual(json.loads(secret["SecretStringTemplate"]), {"username": user["UserName"]})
        self.assertEqual(secret["GenerateStringKey"], "password")
        # A Redis OSS group's mandatory default user can do nothing.
        default = resources["CacheDefaultUser"]["Properties"]
        self.assertEqual((default["UserName"], default["AccessString"]), ("default", "off -@all"))

    def test_the_functions_read_the_redis_user_from_its_secret_in_elasticache_mode(self):
        for binary in ("ws-connect", "ws-disconnect", "ws-default", "ws-fanout"):
            variables = effective_function_properties(self.template, self.function_by_binary(binary))["Environment"]["Variables"]
            self.assertEqual(variables["REDIS_AUTH_SECRET_ARN"],
                             {"Fn::If": ["IsElastiCache", {"Ref": "CacheUserSecret"}, {"Ref": "AWS::NoValue"}]}, binary)

    # --- big rooms -----------------------------------------------------------------------------------
    def test_ws_default_may_invoke_the_fan_out_function_and_nothing_else_and_names_it(self):
        invokers = {}
        for rid, statement in self.allow_statements_by_resource():
            if any(a.startswith("lambda:") for a in as_list(statement["Action"])):
                invokers[rid] = (statement["Action"], statement["Resource"])
        fanout = self.function_by_binary(FANOUT_BINARY)
        self.assertEqual(invokers, {self.role_of(self.function_by_binary("ws-default")):
                                    ("lambda:InvokeFunction", {"Fn::GetAtt": [fanout, "Arn"]})})
        variables = effective_function_properties(self.template, self.function_by_binary("ws-default"))["Environment"]["Variables"]
        self.assertEqual(variables["FANOUT_FUNCTION"], {"Ref": fanout})
        self.assertEqual(variables["FANOUT_SHARD_SIZE"], {"Ref": "FanoutShardSize"})
        self.assertEqual(self.template["Parameters"]["FanoutShardSize"]["MaxValue"], 4000, "the 256 KB async limit")

    def test_a_failed_shard_is_not_retried_and_shards_have_a_concurrency_of_their_own(self):
        props = self.functions[self.function_by_binary(FANOUT_BINARY)]["Properties"]
        self.assertEqual(props["EventInvokeConfig"]["MaximumRetryAttempts"], 0, "a retry would post twice")
        self.assertEqual(props["ReservedConcurrentExecutions"],
                         {"Fn::If": ["ReserveFanoutConcurrency", {"Ref": "FanoutReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})

    def test_every_checkov_skip_gives_a_reason(self):
        for rid, resource in self.template["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                self.assertRegex(skip["id"], r"^CKV2?_AWS_\d+$", rid)
                self.assertGreaterEqual(len(skip.get("comment", "")), 40, f"{rid} {skip['id']} needs a reason")

    def test_sam_transform_keeps_the_explicit_roles(self):
        from samtranslator.translator.transform import transform

        class NoManagedPolicies:
            def load(self):
                return {}

        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        template = copy.deepcopy(self.template)
        for fid in self.functions:
            template["Resources"][fid]["Properties"]["CodeUri"] = "s3://bucket/key"
        out = transform(template, {}, NoManagedPolicies())
        resources = out["Resources"]
        roles = {k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"}
        self.assertEqual(roles, {k for k, v in self.template["Resources"].items() if v["Type"] == "AWS::IAM::Role"})
        for fid in self.functions:
            self.assertEqual(resources[fid]["Type"], "AWS::Lambda::Function")
            self.assertEqual(resources[fid]["Metadata"]["BuildProperties"]["Binary"], self.binary_of(fid))


def main() -> int:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(TemplateTest)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
