"""A picture of each stack: the recorded resources of a mocked run (the one `stacktools.plan` makes)
drawn as a Mermaid flowchart, one subgraph per top-level component with its main resources, and the
paths requests and data take between them and the actors outside the stack (Browser, Clerk, SES).

Edges come from the references the program made: the engine's property dependencies (which resources'
outputs each input is made of), so a change of wiring in the program changes the picture. The few
that no input states are marked where they are made, with the reason.

Written beside the plan snapshots (`snapshots/<stack>.diagram.md`) by `python -m stacktools.plan
--write` and held to the program by the same staleness check.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stacktools.mocked_program import RecordedResource, StackRun, computed_outputs

# The resources a reader looks for, by type, with the label and the shape they are drawn as; every
# other resource of a component (policies, attachments, alarms, log groups...) only counts towards
# its "+ N more" line.
MAIN_TYPES: dict[str, tuple[str, str]] = {
    "aws:ec2/vpc:Vpc": ("VPC", "box"),
    "aws:lb/loadBalancer:LoadBalancer": ("Load balancer", "box"),
    "aws:lb/listener:Listener": ("Listener", "box"),
    "aws:ecs/cluster:Cluster": ("ECS cluster", "box"),
    "aws:ecs/service:Service": ("ECS service", "round"),
    "aws:lambda/function:Function": ("Lambda", "round"),
    "aws:lambda/layerVersion:LayerVersion": ("Lambda layer", "box"),
    "aws:apigatewayv2/api:Api": ("HTTP API", "box"),
    "aws:dynamodb/table:Table": ("DynamoDB table", "store"),
    "aws:sqs/queue:Queue": ("SQS queue", "queue"),
    "aws:sns/topic:Topic": ("SNS topic", "queue"),
    "aws:s3/bucket:Bucket": ("S3 bucket", "store"),
    "aws:rds/instance:Instance": ("RDS PostgreSQL", "store"),
    "aws:elasticache/replicationGroup:ReplicationGroup": ("ElastiCache Redis", "store"),
    "aws:wafv2/webAcl:WebAcl": ("WAF web ACL", "box"),
    "aws:kms/key:Key": ("KMS key", "box"),
    "aws:cloudwatch/dashboard:Dashboard": ("CloudWatch dashboard", "box"),
    "vercel:index/project:Project": ("Vercel project", "round"),
}
# Types that matter by their number rather than one by one: one node per type, with the count.
COUNTED_TYPES: dict[str, str] = {
    "aws:route53/record:Record": "Route 53 records",
    "aws:ec2/natGateway:NatGateway": "NAT gateways",
}
# SES lives outside the stack's resources as far as a request is concerned: the program configures it
# (identity, configuration set), the mailer calls it, and it sends out the events. A reference to any
# of these resources is drawn as one to the SES actor.
SES_TYPES = frozenset(
    {
        "aws:sesv2/configurationSet:ConfigurationSet",
        "aws:sesv2/emailIdentity:EmailIdentity",
    }
)
# Keys are left without edges: every table, queue, topic and bucket of a component is under its key,
# so a line from each user of each key would double the picture and say nothing about where requests
# go (components/aws/kms.py and the README's "Customer managed keys" say who may use which).
# The cluster is where tasks run, not a hop of any request; the dashboard reads every component's
# metrics, which is no path of the application's either.
EDGELESS_TYPES = frozenset(
    {"aws:kms/key:Key", "aws:cloudwatch/dashboard:Dashboard", "aws:ecs/cluster:Cluster"}
)

BROWSER, CLERK, SES = "actor_browser", "actor_clerk", "actor_ses"
ACTORS = {BROWSER: "Browser", CLERK: "Clerk", SES: "Amazon SES"}
# Dotted: a path taken only when the solid one is refused (dead letters, a redirect).
REQUEST, DOTTED = "-->", "-.->"


@dataclass(frozen=True, order=True)
class Node:
    id: str
    label: str
    shape: str


@dataclass(frozen=True, order=True)
class Edge:
    source: str
    target: str
    label: str = ""
    arrow: str = REQUEST


@dataclass
class Subgraph:
    id: str
    # The top-level component's name.
    component: str
    title: str
    nodes: list[Node] = field(default_factory=list)
    # Resources of the component not drawn one by one.
    more: int = 0


@dataclass
class Diagram:
    stack: str
    subgraphs: list[Subgraph]
    actors: list[Node]
    edges: list[Edge]
    # Which node stands for a resource, by URN (the SES actor for SES's resources).
    node_of: dict[str, str]

    def node_ids(self) -> list[str]:
        return [n.id for n in self.actors] + [n.id for s in self.subgraphs for n in s.nodes]


def mermaid_id(text: str) -> str:
    """A Mermaid node id: letters, digits and underscores only. Never a bare keyword (`end`,
    `subgraph`) nor starting with `o` or `x`, which right after an arrow would read as a circle or
    cross edge: every id the diagram makes has a prefix."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def quoted(text: str) -> str:
    """A label in double quotes; a quote inside would end it, so it becomes Mermaid's entity."""
    return '"' + text.replace('"', "#quot;") + '"'


SHAPES = {
    "box": ("[", "]"),
    "round": ("(", ")"),
    "store": ("[(", ")]"),
    "queue": ("[[", "]]"),
    "actor": ("([", "])"),
    "more": ("[/", "/]"),
}


class _Builder:
    def __init__(self, run: StackRun) -> None:
        self.run = run
        self.node_of: dict[str, str] = {}  # URN -> node id, for main resources and SES's resources
        self.edges: set[Edge] = set()
        self.by_type: dict[str, list[RecordedResource]] = defaultdict(list)
        for resource in run.resources:
            self.by_type[resource.type].append(resource)

    # --- components and their nodes ---------------------------------------------------------------

    def top_component(self, resource: RecordedResource) -> RecordedResource | None:
        chain = [resource, *self.run.ancestors(resource)]
        top = chain[-1]
        return None if top.custom else top

    def subgraphs(self) -> list[Subgraph]:
        # Top-level components: the ComponentResources whose parent is the stack (not recorded).
        tops = {r.urn: r for r in self.run.resources if not r.custom and r.parent not in self.run.by_urn}
        members: dict[str, list[RecordedResource]] = defaultdict(list)
        for resource in self.run.resources:
            top = self.top_component(resource)
            if resource.custom and top is not None:
                members[top.urn].append(resource)
        used: set[str] = set(ACTORS)
        subgraphs = []
        for urn, component in sorted(tops.items(), key=lambda item: item[1].name):
            sub = Subgraph(
                id=self.unique(f"c_{mermaid_id(component.name)}", used),
                component=component.name,
                title=f"{component.name} ({component.type.split(':')[-1]})",
            )
            counted: Counter[str] = Counter()
            for resource in sorted(members[urn], key=lambda r: (r.type, r.name)):
                if resource.type in MAIN_TYPES:
                    kind, shape = MAIN_TYPES[resource.type]
                    node_id = self.unique(f"r_{mermaid_id(resource.name)}", used)
                    node = Node(node_id, f"{kind}<br/>{resource.name}", shape)
                    sub.nodes.append(node)
                    self.node_of[resource.urn] = node.id
                elif resource.type in COUNTED_TYPES:
                    counted[resource.type] += 1
                else:
                    sub.more += 1
                if resource.type in SES_TYPES:
                    self.node_of[resource.urn] = SES
            for type_, count in sorted(counted.items()):
                node_id = self.unique(f"{sub.id}_{mermaid_id(type_.split(':')[-1])}", used)
                sub.nodes.append(Node(node_id, f"{COUNTED_TYPES[type_]} x{count}", "box"))
            if sub.more:
                sub.nodes.append(Node(self.unique(f"{sub.id}_more", used), f"+ {sub.more} more", "more"))
            subgraphs.append(sub)
        return subgraphs

    @staticmethod
    def unique(candidate: str, used: set[str]) -> str:
        node_id, n = candidate, 2
        while node_id in used:
            node_id, n = f"{candidate}_{n}", n + 1
        used.add(node_id)
        return node_id

    # --- references --------------------------------------------------------------------------------

    def refs(self, resource: RecordedResource, *keys: str) -> list[RecordedResource]:
        """The resources whose outputs these inputs are made of (all inputs without keys)."""
        deps = resource.property_dependencies
        urns: set[str] = set()
        for key in keys or tuple(deps):
            urns |= deps.get(key, frozenset())
        return [self.run.by_urn[u] for u in sorted(urns) if u in self.run.by_urn]

    def node(self, resource: RecordedResource) -> str | None:
        return self.node_of.get(resource.urn)

    def nodes(self, resources: Iterable[RecordedResource]) -> list[str]:
        return sorted({n for r in resources if (n := self.node(r)) and r.type not in EDGELESS_TYPES})

    def edge(self, source: str | None, target: str | None, label: str = "", arrow: str = REQUEST) -> None:
        if source and target and source != target:
            self.edges.add(Edge(source, target, label, arrow))

    def policy_refs(self, role: RecordedResource) -> list[RecordedResource]:
        """What a role's inline policies name: the resources its holder reads, writes or calls."""
        return [
            ref
            for policy in self.by_type["aws:iam/rolePolicy:RolePolicy"]
            if role.urn in {r.urn for r in self.refs(policy, "role")}
            for ref in self.refs(policy, "policy")
        ]

    def mentions_issuer(self, resource: RecordedResource) -> bool:
        # Whoever is configured with the stack's token issuer fetches Clerk's JWKS to verify tokens.
        return self.run.config.auth.issuer in json.dumps(resource.inputs, default=str)

    def clerk_keys(self, verifier: str | None) -> None:
        # Drawn as the keys travel, from Clerk to the verifier: Clerk then only ever starts edges and
        # sits on the left beside the Browser, instead of a line back across the picture from each.
        self.edge(CLERK, verifier, "JWKS")

    # --- the paths ---------------------------------------------------------------------------------

    def add_edges(self) -> None:
        consumed = self.event_sources()
        self.load_balancer()
        self.compute(consumed)
        self.http_api()
        self.messaging()
        self.browser()

    def event_sources(self) -> set[tuple[str, str]]:
        consumed = set()
        for mapping in self.by_type["aws:lambda/eventSourceMapping:EventSourceMapping"]:
            for source in self.nodes(self.refs(mapping, "eventSourceArn")):
                for function in self.nodes(self.refs(mapping, "functionName")):
                    self.edge(source, function, "triggers")
                    consumed.add((function, source))
        return consumed

    def load_balancer(self) -> None:
        for balancer in self.by_type["aws:lb/loadBalancer:LoadBalancer"]:
            for bucket in self.nodes(self.refs(balancer, "accessLogs")):
                self.edge(self.node(balancer), bucket, "access logs")
        for listener in self.by_type["aws:lb/listener:Listener"]:
            label = f"{listener.inputs.get('protocol', '')} {_number(listener.inputs.get('port'))}".strip()
            for lb in self.nodes(self.refs(listener, "loadBalancerArn")):
                self.edge(lb, self.node(listener), label)
        self.redirects()
        services = self.by_type["aws:ecs/service:Service"]
        for rule in self.by_type["aws:lb/listenerRule:ListenerRule"]:
            groups = {group.urn for group in self.refs(rule, "actions")}
            patterns = [
                pattern
                for condition in rule.inputs.get("conditions", [])
                for pattern in (condition.get("pathPattern") or {}).get("values", [])
            ]
            for listener_node in self.nodes(self.refs(rule, "listenerArn")):
                for service in services:
                    if groups & {group.urn for group in self.refs(service, "loadBalancers")}:
                        self.edge(listener_node, self.node(service), "<br/>".join(patterns))
        for association in self.by_type["aws:wafv2/webAclAssociation:WebAclAssociation"]:
            for acl in self.nodes(self.refs(association, "webAclArn")):
                for target in self.nodes(self.refs(association, "resourceArn")):
                    self.edge(acl, target, "filters")

    def redirects(self) -> None:
        """A listener that redirects (HTTP to HTTPS) to the listener of the same load balancer on the
        protocol and port it names: the browser's request comes back there."""
        listeners = self.by_type["aws:lb/listener:Listener"]
        for listener in listeners:
            balancers = {r.urn for r in self.refs(listener, "loadBalancerArn")}
            for action in listener.inputs.get("defaultActions") or []:
                redirect = action.get("redirect") or {}
                if action.get("type") != "redirect" or not redirect:
                    continue
                for other in listeners:
                    same_balancer = balancers & {r.urn for r in self.refs(other, "loadBalancerArn")}
                    if same_balancer and (
                        str(other.inputs.get("protocol")),
                        _number(other.inputs.get("port")),
                    ) == (str(redirect.get("protocol")), str(redirect.get("port"))):
                        label = f"{redirect.get('statusCode', 'redirect').removeprefix('HTTP_')} to {redirect.get('protocol')}"
                        self.edge(self.node(listener), self.node(other), label, DOTTED)

    def compute(self, consumed: set[tuple[str, str]]) -> None:
        """ECS services and functions to what they use: what their environment (a task definition's
        container definitions, a function's variables) and their role's policies name."""
        for service in self.by_type["aws:ecs/service:Service"]:
            used: list[RecordedResource] = []
            for task in self.refs(service, "taskDefinition"):
                used += self.refs(task, "containerDefinitions")
                for role in self.refs(task, "taskRoleArn"):
                    used += self.policy_refs(role)
                if self.mentions_issuer(task):
                    self.clerk_keys(self.node(service))
            for target in self.nodes(used):
                self.edge(self.node(service), target)
        for function in self.by_type["aws:lambda/function:Function"]:
            used = self.refs(function, "environment")
            for role in self.refs(function, "role"):
                used += self.policy_refs(role)
            # What the program invokes a function with during the deploy (the files migration's
            # runner is handed the task definition to run), and then what that task's containers use.
            used += [
                ref
                for invocation in self.by_type["aws:lambda/invocation:Invocation"]
                if function.urn in {r.urn for r in self.refs(invocation, "functionName")}
                for ref in self.refs(invocation, "input")
            ]
            used += [
                ref
                for task in used
                if task.type == "aws:ecs/taskDefinition:TaskDefinition"
                for ref in self.refs(task, "containerDefinitions")
            ]
            source = self.node(function)
            for target in self.nodes(used):
                # A queue the function is triggered by appears in its policy too (to receive and
                # delete); that path is drawn from the queue.
                if (source, target) not in consumed:
                    self.edge(source, target)
            if self.mentions_issuer(function):
                self.clerk_keys(source)

    def http_api(self) -> None:
        from components.facts import MAILER

        routes: dict[tuple[str, str], list[str]] = defaultdict(list)
        for route in self.by_type["aws:apigatewayv2/route:Route"]:
            key = str(route.inputs.get("routeKey", ""))
            for api in self.nodes(self.refs(route, "apiId")):
                for integration in self.refs(route, "target"):
                    for function in self.nodes(self.refs(integration, "integrationUri")):
                        routes[(api, function)].append(key)
                # Which route Clerk calls is no reference but a fact: the one the mailer declares for
                # its webhooks (WEBHOOK_ROUTE in app_code/mailer), which the program registers.
                if key == MAILER.webhook_route:
                    self.edge(CLERK, api, f"webhooks<br/>{key}")
        for (api, function), keys in routes.items():
            self.edge(api, function, "<br/>".join(sorted(keys)))
        for authorizer in self.by_type["aws:apigatewayv2/authorizer:Authorizer"]:
            if self.mentions_issuer(authorizer):
                for api in self.nodes(self.refs(authorizer, "apiId")):
                    self.clerk_keys(api)

    def messaging(self) -> None:
        for queue in self.by_type["aws:sqs/queue:Queue"]:
            for dead_letters in self.nodes(self.refs(queue, "redrivePolicy")):
                self.edge(self.node(queue), dead_letters, "dead letters", DOTTED)
        for subscription in self.by_type["aws:sns/topicSubscription:TopicSubscription"]:
            for topic in self.nodes(self.refs(subscription, "topic")):
                for endpoint in self.nodes(self.refs(subscription, "endpoint")):
                    self.edge(topic, endpoint)
        for destination in self.by_type[
            "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination"
        ]:
            for ses in self.nodes(self.refs(destination, "configurationSetName")):
                for topic in self.nodes(self.refs(destination, "eventDestination")):
                    self.edge(ses, topic, "events")

    def browser(self) -> None:
        # The frontend's public variables are the URLs the browser calls: a variable made of a
        # resource's outputs points at that resource; one that names a host does through the stack's
        # DNS records (the ALB behind the API domain when the records are published by hand).
        hosts = self.hosts()
        schemes: dict[str, set[str]] = defaultdict(set)
        for variable in self.by_type["vercel:index/projectEnvironmentVariable:ProjectEnvironmentVariable"]:
            value = str(variable.inputs.get("value", ""))
            url = urlsplit(value)
            if not url.scheme or not url.hostname:
                continue
            targets = self.nodes(self.refs(variable, "value")) or (
                [hosts[url.hostname]] if url.hostname in hosts else []
            )
            for target in targets:
                schemes[target].add(url.scheme)
        for target, found in schemes.items():
            self.edge(BROWSER, target, ", ".join(sorted(found)))
        for domain in self.by_type["vercel:index/projectDomain:ProjectDomain"]:
            for project in self.nodes(self.refs(domain, "projectId")):
                self.edge(BROWSER, project, "the app")
        # A bucket with a CORS configuration is one browsers call directly: the services hand out
        # pre-signed URLs and the upload or download goes from the browser to S3.
        for cors in self.by_type["aws:s3/bucketCorsConfiguration:BucketCorsConfiguration"]:
            for bucket in self.nodes(self.refs(cors, "bucket")):
                self.edge(BROWSER, bucket, "pre-signed URLs")

    def hosts(self) -> dict[str, str]:
        """Host names of the stack's endpoints, to the node serving them."""
        hosts: dict[str, str] = {}
        region = self.run.config.region
        for type_, key in (
            ("aws:lb/loadBalancer:LoadBalancer", "dnsName"),
            ("aws:apigatewayv2/api:Api", "apiEndpoint"),
        ):
            for resource in self.by_type[type_]:
                node = self.node(resource)
                value = str(computed_outputs(type_, resource.name, resource.inputs, region).get(key, ""))
                if node and value:
                    hosts[urlsplit(value).hostname or value] = node
        for record in self.run.outputs.get("dnsRecords") or []:
            value = str(record.get("value", "")).rstrip(".")
            if value in hosts:
                hosts[str(record.get("name", "")).rstrip(".")] = hosts[value]
        for record in self.by_type["aws:route53/record:Record"]:
            for node in self.nodes(self.refs(record)):
                hosts[str(record.inputs.get("name", "")).rstrip(".")] = node
        return hosts


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) else str(value or "")


def build(run: StackRun) -> Diagram:
    builder = _Builder(run)
    subgraphs = builder.subgraphs()
    builder.add_edges()
    actors = [Node(node_id, label, "actor") for node_id, label in sorted(ACTORS.items())]
    # One line per pair of nodes, carrying every label: two lines between the same nodes would overlap.
    labels: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for edge in builder.edges:
        labels[(edge.source, edge.target, edge.arrow)] += [edge.label] if edge.label else []
    edges = [
        Edge(source, target, "<br/>".join(sorted(found)), arrow)
        for (source, target, arrow), found in labels.items()
    ]
    return Diagram(run.stack, subgraphs, actors, sorted(edges), dict(builder.node_of))


def _node_line(node: Node) -> str:
    opening, closing = SHAPES[node.shape]
    return f"{node.id}{opening}{quoted(node.label)}{closing}"


def render(run: StackRun, refresh_command: str) -> str:
    """The stack's diagram as a Markdown document holding one Mermaid block (GitHub draws it)."""
    diagram = build(run)
    lines = [
        "```mermaid",
        f"%% stack {diagram.stack}: generated from the program under mocks; refresh with: {refresh_command}",
        "flowchart LR",
    ]
    lines += [f"  {_node_line(actor)}" for actor in diagram.actors]
    for sub in diagram.subgraphs:
        lines.append(f"  subgraph {sub.id}[{quoted(sub.title)}]")
        lines += [f"    {_node_line(node)}" for node in sub.nodes]
        lines.append("  end")
    for edge in diagram.edges:
        label = f"|{quoted(edge.label)}|" if edge.label else ""
        lines.append(f"  {edge.source} {edge.arrow}{label} {edge.target}")
    lines.append("```")
    return "\n".join(lines) + "\n"
