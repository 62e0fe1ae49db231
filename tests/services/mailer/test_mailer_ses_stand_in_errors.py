"""The SES stand-in's (devstack/ses.py) 4xx answers, as a real boto3 sesv2 client reads them, and
byte-level fuzzing of every route it answers or forwards: whatever arrives, the answer is never a
5xx nor a dropped connection.

The error statuses and names are botocore's model of SES v2
(botocore/data/sesv2/2019-09-27/service-2.json.gz): CreateConfigurationSetEventDestination lists
AlreadyExistsException, whose `error.httpStatusCode` is 400; BadRequestException is 400 too and
NotFoundException 404. botocore's RestJSONParser takes the Code from the `x-amzn-ErrorType` header.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.servers import MotoServer, free_port
from devstack.ses import SesStandIn

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


@pytest.fixture
def ses(moto_server: MotoServer) -> Iterator[SesStandIn]:
    with SesStandIn(moto_server.endpoint, port=free_port()) as server:
        yield server


def client(ses: SesStandIn) -> Any:
    return boto3.client(
        "sesv2",
        endpoint_url=ses.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def raw(ses: SesStandIn, method: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    """The status of one request sent as bytes (http.client quotes nothing and checks nothing of the body)."""
    host, port = ses.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers={**SIGNED, **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# What boto3 sends (the signature is not checked locally, as moto checks none): the stand-in
# forwards only signed calls, as SES answers only those.
SIGNED = {
    "Content-Type": "application/json",
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/ses/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "X-Amz-Date": "20261202T000000Z",
}


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response


def test_an_existing_event_destination_is_already_exists_exception(ses: SesStandIn) -> None:
    sesv2 = client(ses)
    with contextlib.suppress(ClientError):  # moto, and so its sets, outlive each test
        sesv2.create_configuration_set(ConfigurationSetName="mail")
    destination = {"Enabled": True, "MatchingEventTypes": ["SEND"], "SnsDestination": {"TopicArn": TOPIC}}
    sesv2.create_configuration_set_event_destination(
        ConfigurationSetName="mail", EventDestinationName="events", EventDestination=destination
    )
    response = error_of(
        lambda: sesv2.create_configuration_set_event_destination(
            ConfigurationSetName="mail", EventDestinationName="events", EventDestination=destination
        )
    )
    assert response["Error"]["Code"] == "AlreadyExistsException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400  # the model's httpStatusCode
    assert "events already exists" in response["Error"]["Message"]
    # The modelled exception class is what boto3 raises for it.
    with pytest.raises(sesv2.exceptions.AlreadyExistsException):
        sesv2.create_configuration_set_event_destination(
            ConfigurationSetName="mail", EventDestinationName="events", EventDestination=destination
        )


def test_a_destination_other_than_sns_is_bad_request(ses: SesStandIn) -> None:
    sesv2 = client(ses)
    response = error_of(
        lambda: sesv2.create_configuration_set_event_destination(
            ConfigurationSetName="mail",
            EventDestinationName="events",
            EventDestination={"CloudWatchDestination": {"DimensionConfigurations": []}},
        )
    )
    assert response["Error"]["Code"] == "BadRequestException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_suppression_list_errors_are_named(ses: SesStandIn) -> None:
    sesv2 = client(ses)
    missing = error_of(lambda: sesv2.get_suppressed_destination(EmailAddress="nobody@motionhq.net"))
    assert (missing["Error"]["Code"], missing["ResponseMetadata"]["HTTPStatusCode"]) == (
        "NotFoundException",
        404,
    )
    gone = error_of(lambda: sesv2.delete_suppressed_destination(EmailAddress="nobody@motionhq.net"))
    assert gone["Error"]["Code"] == "NotFoundException"
    # boto3 validates the enum only in its docs: the service (here, the stand-in) refuses it.
    bad = error_of(lambda: sesv2.put_suppressed_destination(EmailAddress="a@motionhq.net", Reason="SPAM"))
    assert (bad["Error"]["Code"], bad["ResponseMetadata"]["HTTPStatusCode"]) == ("BadRequestException", 400)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b"42", b"null", b"\xff\xfe\x00", b"[" * 100_000],
    ids=["not-json", "array", "string", "number", "null", "not-utf8", "deeply-nested"],
)
def test_a_body_that_is_no_json_object_is_bad_request_with_a_reason(ses: SesStandIn, body: bytes) -> None:
    host, port = ses.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("PUT", "/v2/email/suppression/addresses", body=body)
    response = connection.getresponse()
    document = json.loads(response.read())
    connection.close()
    assert response.status == 400
    assert response.getheader("x-amzn-ErrorType") == "BadRequestException"
    assert document == {"message": "the request body is not a JSON object"}


def test_a_malformed_body_through_boto3_is_bad_request_exception(ses: SesStandIn) -> None:
    """What botocore makes of the stand-in's answer to a body that is no JSON object."""
    sesv2 = client(ses)

    def break_body(request: Any, **_: Any) -> None:
        request.body = b"{truncated"
        request.headers["Content-Length"] = str(len(request.body))

    sesv2.meta.events.register("before-send.sesv2.PutSuppressedDestination", break_body)
    response = error_of(
        lambda: sesv2.put_suppressed_destination(EmailAddress="a@motionhq.net", Reason="BOUNCE")
    )
    assert response["Error"] == {
        "Code": "BadRequestException",
        "Message": "the request body is not a JSON object",
    }


# --- fuzzing ---------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v2/email/account"),
    ("POST", "/v2/email/outbound-emails"),
    ("PUT", "/v2/email/suppression/addresses"),
    ("GET", "/v2/email/suppression/addresses"),
    ("GET", "/v2/email/suppression/addresses/a%40motionhq.net"),
    ("DELETE", "/v2/email/suppression/addresses/a%40motionhq.net"),
    ("POST", "/v2/email/configuration-sets"),
    ("POST", "/v2/email/configuration-sets/mail/event-destinations"),
    ("PUT", "/v2/email/configuration-sets/mail/suppression-options"),
]

VALID: dict[str, dict[str, Any]] = {
    "/v2/email/outbound-emails": {
        "FromEmailAddress": "no-reply@mail.motionhq.net",
        "Destination": {"ToAddresses": ["success@simulator.amazonses.com"]},
        "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        "ConfigurationSetName": "mail",
        "EmailTags": [{"Name": "message_id", "Value": "m1"}],
    },
    "/v2/email/suppression/addresses": {"EmailAddress": "a@motionhq.net", "Reason": "BOUNCE"},
    "/v2/email/configuration-sets": {
        "ConfigurationSetName": "mail",
        "SuppressionOptions": {"SuppressedReasons": ["BOUNCE"]},
    },
    "/v2/email/configuration-sets/mail/event-destinations": {
        "EventDestinationName": "events",
        "EventDestination": {
            "Enabled": True,
            "MatchingEventTypes": ["SEND"],
            "SnsDestination": {"TopicArn": TOPIC},
        },
    },
    "/v2/email/configuration-sets/mail/suppression-options": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
}

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    10**400,
    1e308,
    "",
    "é\u0000\ud7ff\U0001f4e7" * 50,
    "x" * 100_000,
    [],
    [None, 1, {"a": []}],
    {},
    {"ToAddresses": 5},
    {"SnsDestination": "arn"},
    [{"Name": 1}],
]

JUNK_PATHS = [
    "/v2/email/suppression/addresses/%ff%fe",
    "/v2/email/suppression/addresses/%00",
    "/v2/email/suppression/addresses/" + "a" * 5000,
    "/v2/email/configuration-sets/%2e%2e/event-destinations",
    "/v2/email/configuration-sets//event-destinations",
    "/v2/email/configuration-sets/mail/event-destinations/../../x",
    "/v2/email/configuration-sets/mail/suppression-options?x=%zz&&=",
    "/v2/email/account/%E2%82%AC",
    "/v2/email/outbound-emails#frag",
    "/v2/../../etc/passwd",
    "/%",
    "/v2/email/identities/%F0%9F%93%A7",
]


def mutated(rng: random.Random, valid: dict[str, Any]) -> bytes:
    """One fuzzed body: the route's valid body changed in one of several ways, as bytes."""
    text = json.dumps(valid)
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:
        return text.encode()[: rng.randrange(len(text))]  # truncated JSON
    if kind == 2:  # one member (top-level or nested) of a wrong type or an odd value
        document = json.loads(text)
        target = document
        nested = [v for v in document.values() if isinstance(v, dict)]
        if nested and rng.random() < 0.5:
            target = rng.choice(nested)
        if target:
            target[rng.choice(list(target))] = rng.choice(ODD_VALUES)
        return json.dumps(document).encode()
    if kind == 3:  # numbers JSON allows but no machine type holds
        return text.replace('"BOUNCE"', "1" + "0" * 5000).replace("true", "1e99999").encode()
    if kind == 4:
        encoded = bytearray(text.encode())
        for _ in range(rng.randrange(1, 6)):
            encoded[rng.randrange(len(encoded))] = rng.randrange(256)
        return bytes(encoded)
    if kind == 5:
        return json.dumps({key: rng.choice(ODD_VALUES) for key in valid}).encode()
    if kind == 6:
        return json.dumps(valid, ensure_ascii=False).replace("a", "\u202e\u00e4\U0001f600").encode()
    return b""


def test_an_unsigned_call_is_refused_as_ses_refuses_it(ses: SesStandIn) -> None:
    host, port = ses.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(
        "GET", "/v2/email/configuration-sets/mail", headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    assert (response.status, response.getheader("x-amzn-ErrorType")) == (
        403,
        "MissingAuthenticationTokenException",
    )


def test_fuzzed_requests_to_every_route_never_get_a_5xx(ses: SesStandIn) -> None:
    with contextlib.suppress(ClientError):  # moto, and so its sets, outlive each test
        client(ses).create_configuration_set(ConfigurationSetName="mail")
    rng = random.Random(16)  # noqa: S311 - reproducible fuzzing, not secrets
    answered: list[tuple[int, str, str, bytes]] = []
    for method, path in ROUTES:
        valid = VALID.get(urllib.parse.urlsplit(path).path, {})
        for _ in range(40):
            body = mutated(rng, valid or {"Anything": 1})
            answered.append((raw(ses, method, path, body), method, path, body))
    for path in JUNK_PATHS:
        for method in ("GET", "POST", "PUT", "DELETE"):
            body = json.dumps(VALID["/v2/email/suppression/addresses"]).encode()
            answered.append((raw(ses, method, path, body), method, path, body))
    failures = [(s, m, p, b[:120]) for s, m, p, b in answered if s >= 500]
    assert failures == []
    assert {s for s, *_ in answered} & {400, 404}, "the fuzzing reached the 4xx answers"


@pytest.mark.parametrize(
    "length",
    ["-5", "abc", "²", "1e3", str(100 * 1024 * 1024)],
    ids=["negative", "word", "superscript", "float", "huge"],
)
def test_a_content_length_that_is_no_length_is_bad_request(ses: SesStandIn, length: str) -> None:
    """Sent on a raw socket: http.client would write its own Content-Length."""
    host, port = ses.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"PUT /v2/email/suppression/addresses HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode()
        )
        status_line = sock.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.0 400") or status_line.startswith(b"HTTP/1.1 400"), status_line


def test_raw_junk_request_lines_get_no_5xx(ses: SesStandIn) -> None:
    host, port = ses.endpoint.removeprefix("http://").split(":")
    rng = random.Random(17)  # noqa: S311
    lines = [
        b"GET /v2/email/account\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v2/email/suppression/addresses/a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\x00\x01",
        b"GET http://elsewhere/v2/email/account HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BREW /v2/email/account HTTP/1.1\r\nHost: x\r\n\r\n",
        *(
            b"GET /" + rng.randbytes(40).replace(b" ", b"").replace(b"\n", b"") + b" HTTP/1.1\r\n\r\n"
            for _ in range(20)
        ),
    ]
    for line in lines:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(line)
            status_line = sock.makefile("rb").readline()
        parts = status_line.split()
        assert len(parts) >= 2 and parts[1].isdigit(), (line, status_line)
        assert int(parts[1]) < 500, (line, status_line)
