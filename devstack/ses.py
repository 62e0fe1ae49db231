"""The SES stand-in: moto's SES, plus what moto leaves out and the mailing service relies on.

moto accepts `SendEmail` and keeps the e-mail, but publishes no sending events, has no
suppression list and no configuration set event destinations. This server sits in front of it on
the SES v2 endpoint (`AWS_ENDPOINT_URL_SESV2`), forwards every other call unchanged, and adds:

* configuration set event destinations (`CreateConfigurationSetEventDestination` with an SNS
  destination), and the configuration set's `SuppressionOptions`;
* for each e-mail sent with a configuration set that has a destination, the event documents SES
  would publish to its topic (`event_document`, the shape of "Examples of event data that Amazon
  SES publishes to Amazon SNS", SES Developer Guide), published to that topic on the local AWS API,
  which delivers them to the subscribed queue as SNS does;
* the mailbox simulator's addresses, as SES treats them ("Using the mailbox simulator", SES
  Developer Guide): `bounce@simulator.amazonses.com` bounces hard, `complaint@...` is delivered and
  complained about, `suppressionlist@...` is treated as on the suppression list, `ooto@...` and
  `success@...` (and every other address) are delivered; a `+label` before the `@` is allowed;
* the account-level suppression list (`PutSuppressedDestination`, `GetSuppressedDestination`,
  `ListSuppressedDestinations`, `DeleteSuppressedDestination`): an address is added when it bounces
  hard or complains and the configuration set's `SuppressedReasons` say so, and an e-mail to a
  suppressed address is not sent: SES answers with a message id and reports a Bounce of subtype
  `OnAccountSuppressionList`;
* the account's sending status (`GetAccount`, `GET /v2/email/account`), as `account` holds it:
  reported only (the stand-in mails every address whatever it says), so that `make preflight` can be
  run against a sandboxed, paused or healthy account.

Errors are answered as SES v2 (REST-JSON) answers them: the status the service model gives the
error shape, its name in the `x-amzn-ErrorType` header (what botocore reads as the error's Code)
and `{"message": ...}` as the body. A request the stand-in cannot make sense of is a 4xx, never a
5xx or a dropped connection.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack import ses_model

SIMULATOR_DOMAIN = "simulator.amazonses.com"
ACCOUNT = "123456789012"
SEND_PATH = "/v2/email/outbound-emails"
SUPPRESSION_PATH = "/v2/email/suppression/addresses"
CONFIGURATION_SETS_PATH = "/v2/email/configuration-sets"
ACCOUNT_PATH = "/v2/email/account"
MAX_BODY = 10 * 1024 * 1024  # SES v2's largest request: a 10 MB raw message (SendEmail's quota)

# Each error shape's HTTP status, from botocore's model of SES v2
# (botocore/data/sesv2/2019-09-27/service-2.json.gz, shapes[<name>].error.httpStatusCode): SES
# answers an existing event destination with AlreadyExistsException, a 400 like BadRequestException.
ERROR_STATUS = {
    "BadRequestException": 400,
    "AlreadyExistsException": 400,
    "NotFoundException": 404,
    "TooManyRequestsException": 429,
}

# The account of `GetAccount` (GetAccountResponse in the same model: ProductionAccessEnabled,
# SendingEnabled, EnforcementStatus HEALTHY | PROBATION | SHUTDOWN, SendQuota of doubles, where
# Max24HourSend -1 is unlimited). The default is what the stand-in does: it mails every address.
PRODUCTION_ACCOUNT: dict[str, Any] = {
    "DedicatedIpAutoWarmupEnabled": False,
    "EnforcementStatus": "HEALTHY",
    "ProductionAccessEnabled": True,
    "SendingEnabled": True,
    "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0},
}
# A new account's: the sandbox's quota is 200 messages per 24 hours at 1 per second ("Request
# production access (Moving out of the Amazon SES sandbox)", SES Developer Guide).
SANDBOX_ACCOUNT: dict[str, Any] = {
    **PRODUCTION_ACCOUNT,
    "ProductionAccessEnabled": False,
    "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0},
}


@dataclass(frozen=True)
class Answer:
    """What the stand-in answers: a status and JSON document, and the error's type when it is one."""

    status: int
    document: Any
    error_type: str | None = None


def error(error_type: str, message: str) -> Answer:
    return Answer(ERROR_STATUS[error_type], {"message": message}, error_type)


def _object(value: Any) -> dict[str, Any]:
    """A member that should be a JSON object, or {} when it is missing (or, fuzzed, something else)."""
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> tuple[str, ...] | None:
    """A member that should be a list of strings, or None when it is not one."""
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def simulated(address: str) -> str | None:
    """The mailbox simulator's behaviour for `address` ("bounce", "complaint", ...), or None."""
    local, _, domain = address.strip().lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return None
    return local.partition("+")[0]


def event_document(
    event_type: str,
    *,
    ses_message_id: str,
    source: str,
    destination: str,
    tags: dict[str, str],
    configuration_set: str,
    sent_at: str,
    subtype: str = "General",
) -> dict[str, Any]:
    """One sending event as SES publishes it to SNS (`eventType`, `mail`, and the type's object)."""
    at = _now()
    mail = {
        "timestamp": sent_at,
        "source": source,
        "sourceArn": f"arn:aws:ses:us-east-1:{ACCOUNT}:identity/{source.rpartition('@')[2].rstrip('>')}",
        "sendingAccountId": ACCOUNT,
        "messageId": ses_message_id,
        "destination": [destination],
        "headersTruncated": False,
        "headers": [{"name": "To", "value": destination}],
        "commonHeaders": {"from": [source], "to": [destination], "messageId": ses_message_id},
        "tags": {
            "ses:configuration-set": [configuration_set],
            "ses:source-ip": ["127.0.0.1"],
            "ses:from-domain": [source.rpartition("@")[2].rstrip(">")],
            "ses:caller-identity": ["local"],
            **{name: [value] for name, value in tags.items()},
        },
    }
    document: dict[str, Any] = {"eventType": event_type, "mail": mail}
    feedback = f"{uuid.uuid4().hex}-000000"
    if event_type == "Send":
        document["send"] = {}
    elif event_type == "Delivery":
        document["delivery"] = {
            "timestamp": at,
            "processingTimeMillis": 5,
            "recipients": [destination],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta.motion.local",
        }
    elif event_type == "Bounce":
        suppressed = subtype == "OnAccountSuppressionList"
        document["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {
                    "emailAddress": destination,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "Amazon SES did not send the message to this address because it is on "
                    "the suppression list for your account."
                    if suppressed
                    else "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": at,
            "feedbackId": feedback,
            "reportingMTA": "dsn; mta.motion.local",
        }
    elif event_type == "Complaint":
        document["complaint"] = {
            "complainedRecipients": [{"emailAddress": destination}],
            "timestamp": at,
            "feedbackId": feedback,
            "userAgent": "Motion local stand-in",
            "complaintFeedbackType": "abuse",
            "arrivalDate": at,
        }
    else:
        raise ValueError(f"the stand-in does not make {event_type} events")
    return document


@dataclass
class _ConfigurationSet:
    suppressed_reasons: tuple[str, ...] = ()
    # (destination name, topic ARN, event types)
    topics: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)


class SesStandIn:
    """The server; `with SesStandIn(moto_endpoint) as ses: ses.endpoint`."""

    def __init__(
        self, moto_endpoint: str, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1"
    ) -> None:
        self.moto_endpoint = moto_endpoint.rstrip("/")
        self.region = region
        self._sns_client: Any = None
        self.failed_publishes: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.Lock()
        self.suppressed: dict[str, tuple[str, str]] = {}  # lower-case address -> (reason, when)
        self._sets: dict[str, _ConfigurationSet] = {}
        self.published: list[dict[str, Any]] = []
        # What `GetAccount` answers; tests and `make run` may replace it (see PRODUCTION_ACCOUNT).
        self.account: dict[str, Any] = json.loads(json.dumps(PRODUCTION_ACCOUNT))
        # An outage of GetAccount only: (status, error type), e.g. (500, "InternalFailure").
        self.account_failure: tuple[int, str] | None = None
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self, answer: Answer) -> None:
                body = json.dumps(answer.document).encode() if answer.document is not None else b""
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if answer.error_type:
                    # REST-JSON errors name their type in this header; botocore's RestJSONParser
                    # (_inject_error_code) makes it the ClientError's Error.Code.
                    self.send_header("x-amzn-ErrorType", answer.error_type)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                declared = self.headers.get("Content-Length") or "0"
                # A length that is no non-negative number cannot be read (a negative one would read
                # to the end of a connection the client keeps open): refuse it and close.
                if not (declared.isascii() and declared.isdigit()) or int(declared) > MAX_BODY:
                    self.close_connection = True
                    self._answer(error("BadRequestException", "Content-Length is not a length we accept"))
                    return
                length = int(declared)
                body = self.rfile.read(length) if length else b""
                answer = stand_in.route(self.command, self.path, body)
                if answer is None:
                    self._forward(body)
                else:
                    self._answer(answer)

            def _forward(self, body: bytes) -> None:
                if not (self.headers.get("Authorization") or "").startswith("AWS4-HMAC-SHA256 "):
                    # SES refuses an unsigned call (403, "Signing AWS API requests", IAM User Guide);
                    # moto cannot tell which service an unsigned call is for and answers 500.
                    self._answer(
                        Answer(
                            403,
                            {"message": "Missing Authentication Token"},
                            "MissingAuthenticationTokenException",
                        )
                    )
                    return
                try:
                    request = urllib.request.Request(
                        stand_in.moto_endpoint + self.path,
                        data=body if body or self.command in ("POST", "PUT") else None,
                        method=self.command,
                        headers={
                            k: v
                            for k, v in self.headers.items()
                            if k.lower() not in ("host", "content-length")
                        },
                    )
                except ValueError as err:  # a path urllib cannot make a URL of
                    self._answer(error("BadRequestException", f"malformed request: {err}"))
                    return
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data, headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as err:
                    status, data, headers = err.code, err.read(), err.headers
                except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                    # The local AWS API is down or refused the request line: SES's own outage answer.
                    self._answer(Answer(503, {"message": f"the local AWS API: {err}"}, "ServiceUnavailable"))
                    return
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "server",
                        "date",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if status == 200 and self.command == "POST" and self.path == SEND_PATH:
                    stand_in.sent(
                        json.loads(body or b"{}"), _object(json.loads(data or b"{}")).get("MessageId", "")
                    )

            do_GET = do_PUT = do_DELETE = do_PATCH = do_POST = _handle

            def __getattr__(self, name: str) -> Any:
                # http.server answers a method it has no `do_` for with 501; SES has no such call,
                # which route() answers as any other call SES does not have (a 4xx).
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> SesStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="ses-stand-in", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether it still serves (`make run`'s supervisor watches it, as it does the AWS API)."""
        return self._thread is not None and self._thread.is_alive()

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the calls the stand-in answers itself --------------------------------------------------

    def route(self, method: str, path: str, body: bytes) -> Answer | None:
        """The answer to a call moto lacks, or None to forward it."""
        parsed = urllib.parse.urlsplit(path)
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        try:
            document = json.loads(body) if body else {}
        except (ValueError, RecursionError):  # not JSON (or nested past the parser's depth)
            document = None
        if not isinstance(document, dict):
            # SES v2 bodies are JSON objects; answer as SES would, never drop the connection.
            return error("BadRequestException", "the request body is not a JSON object")
        # Every call is checked as SES checks it before moto (which answers 500 to what it cannot
        # parse) or the stand-in's own handlers see it (devstack/ses_model.py).
        called = ses_model.operation(method, parsed.path)
        if called is None:
            return error("NotFoundException", f"SES v2 has no {method} {parsed.path}")
        problem = ses_model.body_problem(called, document)
        if problem:
            return error("BadRequestException", f"{called.name}: {problem}")
        if parsed.path == ACCOUNT_PATH and method == "GET":
            return self._get_account()
        if parsed.path == SEND_PATH and method == "POST":
            return self._send_suppressed(document)
        if parsed.path.startswith(SUPPRESSION_PATH):
            return self._suppression(method, parts[4:], document)
        if parsed.path == CONFIGURATION_SETS_PATH and method == "POST":
            # Remember the suppression options, and let moto create the set.
            name = document.get("ConfigurationSetName")
            reasons = _strings(_object(document.get("SuppressionOptions")).get("SuppressedReasons"))
            if not isinstance(name, str) or reasons is None:
                return error(
                    "BadRequestException", "ConfigurationSetName and SuppressedReasons are malformed"
                )
            with self._lock:
                self._sets[name] = _ConfigurationSet(reasons)
            return None
        if parsed.path.startswith(CONFIGURATION_SETS_PATH) and len(parts) >= 5:
            return self._configuration_set(method, parts[3], parts[4], document)
        return None

    def _get_account(self) -> Answer:
        with self._lock:
            if self.account_failure is not None:
                status, kind = self.account_failure
                return Answer(status, {"message": "the stand-in was told to fail GetAccount"}, kind)
            return Answer(200, json.loads(json.dumps(self.account)))

    def _configuration_set(
        self, method: str, name: str, what: str, document: dict[str, Any]
    ) -> Answer | None:
        with self._lock:
            config = self._sets.setdefault(name, _ConfigurationSet())
            if what == "event-destinations" and method == "POST":
                destination = _object(document.get("EventDestination"))
                topic = _object(destination.get("SnsDestination")).get("TopicArn")
                types = _strings(destination.get("MatchingEventTypes"))
                destination_name = document.get("EventDestinationName")
                if not isinstance(topic, str) or not topic:
                    return error("BadRequestException", "the stand-in supports SNS destinations only")
                if not isinstance(destination_name, str) or types is None:
                    return error(
                        "BadRequestException", "EventDestinationName and MatchingEventTypes are malformed"
                    )
                if any(existing == destination_name for existing, _, _ in config.topics):
                    return error(
                        "AlreadyExistsException", f"event destination {destination_name} already exists"
                    )
                config.topics.append((destination_name, topic, types))
                return Answer(200, {})
            if what == "suppression-options" and method == "PUT":
                reasons = _strings(document.get("SuppressedReasons"))
                if reasons is None:
                    return error("BadRequestException", "SuppressedReasons is not a list of reasons")
                config.suppressed_reasons = reasons
                return Answer(200, {})
        return None

    def _suppression(self, method: str, rest: list[str], document: dict[str, Any]) -> Answer:
        with self._lock:
            if method == "PUT" and not rest:
                address = document.get("EmailAddress")
                reason = document.get("Reason")
                if not isinstance(address, str) or not address or reason not in ("BOUNCE", "COMPLAINT"):
                    return error(
                        "BadRequestException", "EmailAddress and Reason (BOUNCE or COMPLAINT) are required"
                    )
                self.suppressed[address.lower()] = (reason, _now())
                return Answer(200, {})
            if method == "GET" and not rest:
                summaries = [
                    {"EmailAddress": a, "Reason": r, "LastUpdateTime": t}
                    for a, (r, t) in self.suppressed.items()
                ]
                return Answer(200, {"SuppressedDestinationSummaries": summaries})
            address = rest[0].lower() if rest else ""
            if address not in self.suppressed:
                return error("NotFoundException", f"{address} is not on the suppression list")
            if method == "DELETE":
                del self.suppressed[address]
                return Answer(200, {})
            reason, when = self.suppressed[address]
            return Answer(
                200,
                {
                    "SuppressedDestination": {
                        "EmailAddress": address,
                        "Reason": reason,
                        "LastUpdateTime": when,
                        "Attributes": {},
                    }
                },
            )

    def _send_suppressed(self, request: dict[str, Any]) -> Answer | None:
        """An e-mail to a suppressed address is answered, not sent (forwarded to moto otherwise)."""
        addresses = _object(request.get("Destination")).get("ToAddresses") or []
        if not isinstance(addresses, list) or len(addresses) != 1:
            return None
        address = str(addresses[0])
        with self._lock:
            listed = address.lower() in self.suppressed or simulated(address) == "suppressionlist"
        if not listed:
            return None
        message_id = f"{uuid.uuid4().hex}-suppressed"
        self._publish(
            request, message_id, address, [("Send", "General"), ("Bounce", "OnAccountSuppressionList")]
        )
        return Answer(200, {"MessageId": message_id})

    def sent(self, request: dict[str, Any], message_id: str) -> None:
        """moto took the e-mail: publish what SES would report for it."""
        addresses = _object(request.get("Destination")).get("ToAddresses") or []
        if not isinstance(addresses, list) or len(addresses) != 1 or not message_id:
            return  # the mailer sends one recipient per e-mail; nothing else is simulated
        address = str(addresses[0])
        behaviour = simulated(address)
        if behaviour == "bounce":
            events = [("Send", "General"), ("Bounce", "General")]
        elif behaviour == "complaint":
            events = [("Send", "General"), ("Delivery", "General"), ("Complaint", "General")]
        else:
            events = [("Send", "General"), ("Delivery", "General")]
        self._publish(request, message_id, address, events)

    def _publish(
        self, request: dict[str, Any], message_id: str, address: str, events: list[tuple[str, str]]
    ) -> None:
        listed_name = request.get("ConfigurationSetName")
        name = listed_name if isinstance(listed_name, str) else ""
        with self._lock:
            config = self._sets.get(name)
            topics = [(topic, types) for _, topic, types in config.topics] if config else []
            reasons = config.suppressed_reasons if config else ()
        listed = request.get("EmailTags")
        tags = {
            str(t.get("Name")): str(t.get("Value"))
            for t in (listed if isinstance(listed, list) else [])
            if isinstance(t, dict)
        }
        sent_at = _now()
        for event_type, subtype in events:
            if event_type == "Bounce" and subtype == "General" and "BOUNCE" in reasons:
                self._suppress(address, "BOUNCE")
            if event_type == "Complaint" and "COMPLAINT" in reasons:
                self._suppress(address, "COMPLAINT")
            document = event_document(
                event_type,
                ses_message_id=message_id,
                source=str(request.get("FromEmailAddress", "")),
                destination=address,
                tags=tags,
                configuration_set=name,
                sent_at=sent_at,
                subtype=subtype,
            )
            with self._lock:
                self.published.append(document)
            for topic, types in topics:
                if not types or event_type.upper() in {t.upper() for t in types}:
                    self._sns_publish(topic, document)

    def _suppress(self, address: str, reason: str) -> None:
        with self._lock:
            self.suppressed.setdefault(address.lower(), (reason, _now()))

    def _sns_publish(self, topic: str, document: dict[str, Any]) -> None:
        # A publish that fails is kept and reported (`failed_publishes`), never dropped unseen.
        try:
            self._sns().publish(TopicArn=topic, Message=json.dumps(document))
        except Exception as err:
            with self._lock:
                self.failed_publishes.append((topic, document, repr(err)))
            print(
                f"ses stand-in: publishing a {document['eventType']} event to {topic} failed: {err}",
                file=sys.stderr,
            )

    def _sns(self) -> Any:
        with self._lock:
            if self._sns_client is None:
                import boto3

                self._sns_client = boto3.client(
                    "sns",
                    endpoint_url=self.moto_endpoint,
                    region_name=self.region,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )
            return self._sns_client


@contextlib.contextmanager
def ses_stand_in(moto_endpoint: str) -> Iterator[SesStandIn]:
    with SesStandIn(moto_endpoint) as server:
        yield server
