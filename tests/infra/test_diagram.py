"""The picture of each stack (stacktools/diagram.py): every component drawn, the paths requests and
data take drawn from the program's own references, Mermaid a renderer accepts, the same text on every
run, and the README's copy the generated one."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from components.facts import CHAT, FILES, MAILER
from stacktools import diagram
from stacktools.mocked_program import ROOT
from stacktools.plan import REFRESH_COMMAND, STACKS, render_diagram
from tests.infra.harness import StackRun, run_stack

NODE = re.compile(
    r'^(?P<id>[A-Za-z][A-Za-z0-9_]*)(?P<open>\(\[|\[\(|\[\[|\[/|\[|\()"(?P<label>[^"]*)"(?P<close>\]\)|\)\]|\]\]|/\]|\]|\))$'
)
SUBGRAPH = re.compile(r'^subgraph (?P<id>[A-Za-z][A-Za-z0-9_]*)\["(?P<title>[^"]*)"\]$')
EDGE = re.compile(
    r'^(?P<source>[A-Za-z][A-Za-z0-9_]*) (?P<arrow>-->|-\.->)(?:\|"(?P<label>[^"]*)"\|)? (?P<target>[A-Za-z][A-Za-z0-9_]*)$'
)
KEYWORDS = {"end", "subgraph", "graph", "flowchart", "style", "class", "classDef", "click", "linkStyle"}


def parse(text: str) -> tuple[dict[str, str], list[str], list[tuple[str, str, str]]]:
    """Nodes (id -> label), subgraph ids and edges of a diagram document; fails on any line that is
    none of the shapes the renderer is given, and on unbalanced subgraphs."""
    lines = text.splitlines()
    assert lines[0] == "```mermaid" and lines[-1] == "```", "one fenced Mermaid block"
    body = [line.strip() for line in lines[1:-1] if not line.strip().startswith("%%")]
    assert body[0] == "flowchart LR"
    nodes: dict[str, str] = {}
    subgraphs: list[str] = []
    edges: list[tuple[str, str, str]] = []
    depth = 0
    for line in body[1:]:
        if match := SUBGRAPH.match(line):
            depth += 1
            subgraphs.append(match["id"])
        elif line == "end":
            depth -= 1
            assert depth >= 0, "an `end` without its subgraph"
        elif match := NODE.match(line):
            assert match["id"] not in nodes, f"node id {match['id']} declared twice"
            nodes[match["id"]] = match["label"]
        elif match := EDGE.match(line):
            assert depth == 0, "edges come after every subgraph, so no node lands in the wrong one"
            edges.append((match["source"], match["target"], match["label"] or ""))
        else:
            pytest.fail(f"not a line the diagram should contain: {line!r}")
    assert depth == 0, "a subgraph without its `end`"
    return nodes, subgraphs, edges


@pytest.fixture(scope="module", params=STACKS)
def run(request: pytest.FixtureRequest) -> StackRun:
    return run_stack(request.param)


def node(run: StackRun, type_: str, name_contains: str) -> str:
    return diagram.build(run).node_of[run.one(type_, name_contains).urn]


def edges(run: StackRun) -> dict[tuple[str, str], str]:
    return {(e.source, e.target): e.label for e in diagram.build(run).edges}


def test_the_mermaid_is_well_formed(run: StackRun) -> None:
    nodes, subgraphs, found = parse(render_diagram(run))
    ids = [*nodes, *subgraphs]
    assert len(ids) == len(set(ids)), "node and subgraph ids are unique"
    assert not set(ids) & KEYWORDS
    for source, target, _ in found:
        assert source in nodes and target in nodes, f"edge {source} -> {target} to an undeclared node"
    assert len(found) == len(set(found)), "no edge drawn twice"
    assert REFRESH_COMMAND in render_diagram(run)


def test_every_top_level_component_is_a_subgraph(run: StackRun) -> None:
    tops = {r.name for r in run.resources if not r.custom and r.parent not in run.by_urn}
    drawn = diagram.build(run)
    assert {s.component for s in drawn.subgraphs} == tops
    text = render_diagram(run)
    for sub in drawn.subgraphs:
        assert f"subgraph {sub.id}[" in text


def test_each_component_accounts_for_all_its_resources(run: StackRun) -> None:
    # Drawn one by one, counted by type, or summed up in "+ N more": nothing silently left out.
    drawn = diagram.build(run)
    for sub in drawn.subgraphs:
        component = next(r for r in run.resources if not r.custom and r.name == sub.component)
        members = [r for r in run.resources if r.custom and component in [r, *run.ancestors(r)]]
        shown = 0
        for n in sub.nodes:
            if (count := re.search(r" x(\d+)$", n.label)) is not None:
                shown += int(count[1])
            elif not n.label.startswith("+ "):
                shown += 1
        assert shown + sub.more == len(members), sub.component
        if sub.more:
            assert f"+ {sub.more} more" in [n.label for n in sub.nodes]


def test_only_main_resources_are_drawn(run: StackRun) -> None:
    nodes, _, _ = parse(render_diagram(run))
    labels = " ".join(nodes.values())
    for absent in ("RolePolicy", "MetricAlarm", "LogGroup", "SecurityGroup", "Subnet"):
        assert absent not in labels
    assert len(nodes) < len(run.resources) / 3


def test_waf_only_where_the_stack_turns_it_on() -> None:
    production, dev = run_stack("production"), run_stack("dev")
    assert production.config.waf and not dev.config.waf
    assert "waf" in {s.component for s in diagram.build(production).subgraphs}
    assert "waf" not in {s.component for s in diagram.build(dev).subgraphs}
    assert "WAF web ACL" in render_diagram(production)
    assert "WAF" not in render_diagram(dev)
    acl = node(production, "aws:wafv2/webAcl:WebAcl", "")
    alb = node(production, "aws:lb/loadBalancer:LoadBalancer", "")
    assert (acl, alb) in edges(production)


def test_requests_reach_each_service_through_its_listener_rule(run: StackRun) -> None:
    found = edges(run)
    alb = node(run, "aws:lb/loadBalancer:LoadBalancer", "")
    public = "platform-https" if run.config.tls else "platform-http"
    listener = node(run, "aws:lb/listener:Listener", public)
    assert (diagram.BROWSER, alb) in found
    assert (alb, listener) in found
    if run.config.tls:
        # Plain HTTP only redirects, back onto the HTTPS listener.
        redirect = node(run, "aws:lb/listener:Listener", "platform-http-redirect")
        assert found[(alb, redirect)] == "HTTP 80"
        assert found[(redirect, listener)] == "301 to HTTPS"
        assert not [target for source, target in found if source == redirect and target != listener]
    expected = {
        "chat-service": CHAT.alb_path_patterns,
        "files-upload": FILES.alb_path_patterns["upload"],
        "files-download": FILES.alb_path_patterns["download"],
    }
    for name, patterns in expected.items():
        service = node(run, "aws:ecs/service:Service", name)
        assert (listener, service) in found, name
        assert found[(listener, service)].split("<br/>") == list(patterns), name


def test_data_paths(run: StackRun) -> None:
    found = edges(run)

    def n(type_: str, name: str) -> str:
        return node(run, type_, name)

    service, function, queue, table = (
        "aws:ecs/service:Service",
        "aws:lambda/function:Function",
        "aws:sqs/queue:Queue",
        "aws:dynamodb/table:Table",
    )
    bucket = n("aws:s3/bucket:Bucket", "files-bucket")
    database = n("aws:rds/instance:Instance", "files-db")
    redis = n("aws:elasticache/replicationGroup:ReplicationGroup", "chat-redis")
    api = n("aws:apigatewayv2/api:Api", "mailing-api")
    must = [
        # Files: the services sign the URLs and keep the records; the browser moves the bytes.
        (n(service, "files-upload"), bucket),
        (n(service, "files-download"), bucket),
        (n(service, "files-upload"), database),
        (n(service, "files-download"), database),
        (diagram.BROWSER, bucket),
        # Chat: fan-out through Redis, history in its table.
        (n(service, "chat-service"), redis),
        (n(service, "chat-service"), n(table, "chat-messages")),
        # Mail: browser -> API -> mail API -> queue -> mailer -> SES, and SES's events back.
        (diagram.BROWSER, api),
        (api, n(function, "mailing-mail-api")),
        (n(function, "mailing-mail-api"), n(queue, "mailing-queue")),
        (n(queue, "mailing-queue"), n(function, "mailing-mailer")),
        (n(queue, "mailing-queue"), n(queue, "mailing-dlq")),
        (n(function, "mailing-mailer"), diagram.SES),
        (n(function, "mailing-mailer"), n(table, "mailing-messages")),
        (diagram.SES, n("aws:sns/topic:Topic", "ses-events")),
        (n("aws:sns/topic:Topic", "ses-events"), n(queue, "ses-events-queue")),
        (n(queue, "ses-events-queue"), n(function, "mail-events")),
        # Clerk: its webhooks come in through the API; every verifier fetches its JWKS.
        (diagram.CLERK, api),
        (api, n(function, "mail-directory")),
        (diagram.CLERK, n(service, "chat-service")),
        (diagram.CLERK, n(service, "files-upload")),
        (diagram.CLERK, n(service, "files-download")),
        # The migration's runner starts the task that migrates the database.
        (n(function, "files-migrate-runner"), database),
    ]
    missing = [edge for edge in must if edge not in found]
    assert not missing, missing
    assert MAILER.webhook_route in found[(diagram.CLERK, api)]
    assert "JWKS" in found[(diagram.CLERK, api)], "the API's authorizer verifies Clerk's tokens"
    # The mailer is triggered by its queue, so no edge back to it from the permission to receive.
    assert (n(function, "mailing-mailer"), n(queue, "mailing-queue")) not in found


def test_keys_and_the_dashboard_are_drawn_without_edges(run: StackRun) -> None:
    drawn = diagram.build(run)
    quiet = {drawn.node_of[r.urn] for r in run.resources if r.type in diagram.EDGELESS_TYPES}
    assert quiet
    assert not {e.source for e in drawn.edges} & quiet
    assert not {e.target for e in drawn.edges} & quiet


def test_the_diagram_is_deterministic(run: StackRun) -> None:
    first = render_diagram(run)
    assert render_diagram(run) == first
    # Nor does it depend on the order the program registered its resources in.
    shuffled = StackRun(run.stack, run.config, list(reversed(run.resources)), run.outputs, run.calls)
    assert render_diagram(shuffled) == first


def test_ids_and_labels_are_escaped() -> None:
    assert diagram.mermaid_id("files-db.instance/0") == "files_db_instance_0"
    assert diagram.quoted('a "b"') == '"a #quot;b#quot;"'


def test_the_readme_shows_the_dev_diagram() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```mermaid\n.*?^```\n", readme, flags=re.S | re.M)
    assert blocks == [render_diagram(run_stack("dev"))], (
        f"the README's Mermaid block is not the dev diagram: run `{REFRESH_COMMAND}` and commit README.md"
    )
    assert "snapshots/production.diagram.md" in readme


def test_counts_do_not_repeat_ids() -> None:
    drawn = diagram.build(run_stack("production"))
    counts = Counter(drawn.node_ids())
    assert max(counts.values()) == 1
