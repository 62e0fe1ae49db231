"""The mail service's authorization matrix: every route it deploys (the mail API's `mailer.API_ROUTES`
behind the JWT authorizer, and Clerk's webhook route, which has no authorizer and is authenticated by
its Svix signature) for every kind of caller, with the status each must get, from this one table. A
route without a row fails `test_every_route_has_a_row`, so no route ships without its permissions
stated and tested.

Every cell runs through the local API Gateway stand-in (token verification as the JWT authorizer
does it) into the real handlers, on the local AWS API, against a fresh directory where:
- `member` shares project P with `u_bob`, the recipient every send names;
- `former` was in P, received a message there, and has left P (the membership webhook removed it);
- `outsider` is a directory user in another project only;
- `no_token`, `forged` (right issuer and key id, another key) and `expired` carry no valid token;
- `svix_signed`, `svix_forged`, `svix_stale` and `svix_replayed` carry Svix headers (no bearer token):
  signed with the stack's secret, with another secret, 10 minutes old, and a delivery already applied.
A refused cell must change nothing: no event queued, no directory entry written."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mailer import API_ROUTES, LIST_ROUTE, SEND_ROUTE, WEBHOOK_ROUTE
from mailer.webhook import SecretCache, WebhookReceiver, secrets_manager_fetch
from motion_common.auth import TokenVerifier

from devstack.apigw import LocalHttpApi, make_app
from devstack.identity import Issuer, svix_signature
from tests.services.mailer.support import MailEnv

BEARERS = ("member", "former", "outsider", "no_token", "forged", "expired")
SVIX = ("svix_signed", "svix_forged", "svix_stale", "svix_replayed")
PRINCIPALS = (*BEARERS, *SVIX)
PROJECT = "p_shared"


def api_row(allowed: dict[str, int]) -> dict[str, int]:
    """The mail API: everyone without a valid bearer token is turned away by the authorizer (401)."""
    return {p: allowed.get(p, 401) for p in PRINCIPALS}


# route -> principal -> status
MATRIX: dict[str, dict[str, int]] = {
    # Recipients must share a project with the sender now: a leaver and an outsider mail no one.
    SEND_ROUTE: api_row({"member": 202, "former": 403, "outsider": 403}),
    # Everyone reads their own mailbox, and only it; a leaver keeps what they sent and received.
    LIST_ROUTE: api_row({"member": 200, "former": 200, "outsider": 200}),
    # No authorizer: a bearer token counts for nothing. Without Svix headers the delivery is
    # malformed (400); a bad signature or an old timestamp is 401; a delivered svix-id is 409.
    WEBHOOK_ROUTE: {
        **{p: 400 for p in BEARERS},
        "svix_signed": 200,
        "svix_forged": 401,
        "svix_stale": 401,
        "svix_replayed": 409,
    },
}


def test_every_route_has_a_row() -> None:
    assert sorted(MATRIX) == sorted([*API_ROUTES, WEBHOOK_ROUTE]), "each mail route needs a row here"
    for route, statuses in MATRIX.items():
        assert set(statuses) == set(PRINCIPALS), route


@dataclass(frozen=True)
class World:
    env: MailEnv
    client: httpx.Client
    former_message: str  # the message `member` sent `former` while both were in P


def _new_user_event() -> dict[str, Any]:
    user_id = f"u_new_{uuid.uuid4().hex[:8]}"
    return {
        "object": "event",
        "type": "user.created",
        "data": {
            "id": user_id,
            "object": "user",
            "first_name": "New",
            "last_name": None,
            "primary_email_address_id": "idn_1",
            "email_addresses": [
                {"id": "idn_1", "object": "email_address", "email_address": "new@example.org"}
            ],
        },
    }


@pytest.fixture
def world(make_mail_env: Callable[..., MailEnv], verifier: TokenVerifier) -> Iterator[World]:
    env = make_mail_env()
    env.add_user("u_member", "member@example.org", (PROJECT,), name="Mia Member")
    env.add_user("u_bob", "bob@example.org", (PROJECT,))
    env.add_user("u_former", "former@example.org", (PROJECT,))
    env.add_user("u_outsider", "outsider@example.org", ("p_elsewhere",))
    # A message member -> former, stored as the mailer stores it, while former was in P.
    message = env.message(sender="u_member", recipients=("former@example.org",))
    assert env.store().save(message)
    env.directory().remove_membership("u_former", PROJECT)
    fetch = secrets_manager_fetch(env.session.client("secretsmanager"), env.resources.webhook_secret_arn)
    receiver = WebhookReceiver(env.directory(), SecretCache(fetch))
    app = make_app(env.api().handle, verifier, public={WEBHOOK_ROUTE: receiver.handle})
    with LocalHttpApi(app) as gateway, httpx.Client(base_url=gateway.url, timeout=15) as client:
        yield World(env=env, client=client, former_message=message.message_id)


def credentials(principal: str, body: bytes, world: World, issuer: Issuer) -> dict[str, str]:
    """The headers `principal` sends with `body`."""
    if principal in ("member", "former", "outsider"):
        return {"authorization": f"Bearer {issuer.mint(f'u_{principal}', [])}"}
    if principal == "forged":
        forger = Issuer(issuer=issuer.issuer, kid=issuer.kid)
        return {"authorization": f"Bearer {forger.mint('u_member', [])}"}
    if principal == "expired":
        return {"authorization": f"Bearer {issuer.mint('u_member', [], ttl_seconds=-3600)}"}
    if principal == "no_token":
        return {}
    secret = world.env.resources.webhook_secret
    stamp = int(time.time())
    if principal == "svix_forged":
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    elif principal == "svix_stale":
        stamp -= 600
    delivery_id = f"msg_{uuid.uuid4().hex}"
    headers = {
        "svix-id": delivery_id,
        "svix-timestamp": str(stamp),
        "svix-signature": svix_signature(secret, delivery_id, str(stamp), body),
    }
    if principal == "svix_replayed":
        # Delivered (and applied) once already; the cell sends it again.
        first = world.client.post(
            WEBHOOK_ROUTE.split(" ", 1)[1],
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
        assert first.status_code in (200, 400), first.text
    return headers


def request_for(route: str) -> tuple[str, str, bytes]:
    method, path = route.split(" ", 1)
    if route == SEND_ROUTE:
        body = {"recipients": ["u_bob"], "subject": "Review at 3", "body": "See you there."}
        return method, path, json.dumps(body).encode()
    if route == WEBHOOK_ROUTE:
        return method, path, json.dumps(_new_user_event()).encode()
    return method, path, b""


def directory_users(env: MailEnv) -> set[str]:
    items = env.dynamodb.scan(TableName=env.resources.users_table, ConsistentRead=True)["Items"]
    return {item["pk"]["S"] for item in items}


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("route", sorted(MATRIX))
def test_authorization_matrix(world: World, issuer: Issuer, route: str, principal: str) -> None:
    method, path, body = request_for(route)
    headers = credentials(principal, body, world, issuer)
    queued_before = world.env.queue_depth(world.env.resources.queue_url)
    users_before = directory_users(world.env)
    resp = world.client.request(
        method,
        path,
        content=body or None,
        headers={**headers, **({"content-type": "application/json"} if body else {})},
    )
    expected = MATRIX[route][principal]
    assert resp.status_code == expected, f"{principal} {route}: {resp.text}"
    assert "message" in resp.json() or expected < 400
    queued = world.env.queue_depth(world.env.resources.queue_url) - queued_before
    assert queued == (1 if (route, expected) == (SEND_ROUTE, 202) else 0), f"{principal} {route}"
    users = directory_users(world.env) - users_before
    if (route, expected) == (WEBHOOK_ROUTE, 200):
        assert users, "an applied user.created adds the user"
    else:
        assert not users, f"{principal} {route} wrote the directory: {users}"
    if route == LIST_ROUTE and expected == 200:
        ids = [m["id"] for m in resp.json()["messages"]]
        # Only the caller's own mail: member sent it, former received it, outsider has none.
        assert ids == ([] if principal == "outsider" else [world.former_message]), principal
