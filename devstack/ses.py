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
  `OnAccountSuppressionList`.
"""

from __future__ import annotations

import contextlib
import datetime
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

SIMULATOR_DOMAIN = "simulator.amazonses.com"
ACCOUNT = "123456789012"
SEND_PATH = "/v2/email/outbound-emails"
SUPPRESSION_PATH = "/v2/email/suppression/addresses"
CONFIGURATION_SETS_PATH = "/v2/email/configuration-sets"


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
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self, status: int, document: Any) -> None:
                body = json.dumps(document).encode() if document is not None else b""
                # REST-JSON errors name their type in this header (botocore reads it).
                kind = {400: "BadRequestException", 404: "NotFoundException"}.get(status)
                headers = {"x-amzn-ErrorType": kind} if kind else {}
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = stand_in.route(self.command, self.path, body)
                if answer is None:
                    self._forward(body)
                else:
                    self._answer(*answer)

            def _forward(self, body: bytes) -> None:
                request = urllib.request.Request(
                    stand_in.moto_endpoint + self.path,
                    data=body if body or self.command in ("POST", "PUT") else None,
                    method=self.command,
                    headers={
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data, headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as err:
                    status, data, headers = err.code, err.read(), err.headers
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
                    stand_in.sent(json.loads(body or b"{}"), json.loads(data or b"{}").get("MessageId", ""))

            do_GET = do_PUT = do_DELETE = do_PATCH = do_POST = _handle

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

    def route(self, method: str, path: str, body: bytes) -> tuple[int, Any] | None:
        """The answer to a call moto lacks, or None to forward it."""
        parsed = urllib.parse.urlsplit(path)
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        try:
            document = json.loads(body) if body else {}
        except ValueError:
            document = None
        if not isinstance(document, dict):
            # SES v2 bodies are JSON objects; answer as SES would, never drop the connection.
            return 400, {"message": "the request body is not a JSON object"}
        if parsed.path == SEND_PATH and method == "POST":
            return self._send_suppressed(document)
        if parsed.path.startswith(SUPPRESSION_PATH):
            return self._suppression(method, parts[4:], document)
        if parsed.path == CONFIGURATION_SETS_PATH and method == "POST":
            # Remember the suppression options, and let moto create the set.
            reasons = (document.get("SuppressionOptions") or {}).get("SuppressedReasons") or []
            with self._lock:
                self._sets[document.get("ConfigurationSetName", "")] = _ConfigurationSet(tuple(reasons))
            return None
        if parsed.path.startswith(CONFIGURATION_SETS_PATH) and len(parts) >= 5:
            name = parts[3]
            with self._lock:
                config = self._sets.setdefault(name, _ConfigurationSet())
                if parts[4] == "event-destinations" and method == "POST":
                    destination = document.get("EventDestination") or {}
                    topic = (destination.get("SnsDestination") or {}).get("TopicArn")
                    if not topic:
                        return 400, {"message": "the stand-in supports SNS destinations only"}
                    name = document.get("EventDestinationName", "")
                    if any(existing == name for existing, _, _ in config.topics):
                        return 400, {"message": f"event destination {name} already exists"}
                    config.topics.append((name, topic, tuple(destination.get("MatchingEventTypes") or ())))
                    return 200, {}
                if parts[4] == "suppression-options" and method == "PUT":
                    config.suppressed_reasons = tuple(document.get("SuppressedReasons") or ())
                    return 200, {}
        return None

    def _suppression(self, method: str, rest: list[str], document: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if method == "PUT" and not rest:
                address = str(document.get("EmailAddress", "")).lower()
                reason = document.get("Reason")
                if not address or reason not in ("BOUNCE", "COMPLAINT"):
                    return 400, {"message": "EmailAddress and Reason (BOUNCE or COMPLAINT) are required"}
                self.suppressed[address] = (reason, _now())
                return 200, {}
            if method == "GET" and not rest:
                summaries = [
                    {"EmailAddress": a, "Reason": r, "LastUpdateTime": t}
                    for a, (r, t) in self.suppressed.items()
                ]
                return 200, {"SuppressedDestinationSummaries": summaries}
            address = rest[0].lower() if rest else ""
            if address not in self.suppressed:
                return 404, {"message": f"{address} is not on the suppression list"}
            if method == "DELETE":
                del self.suppressed[address]
                return 200, {}
            reason, when = self.suppressed[address]
            return 200, {
                "SuppressedDestination": {
                    "EmailAddress": address,
                    "Reason": reason,
                    "LastUpdateTime": when,
                    "Attributes": {},
                }
            }

    def _send_suppressed(self, request: dict[str, Any]) -> tuple[int, Any] | None:
        """An e-mail to a suppressed address is answered, not sent (forwarded to moto otherwise)."""
        addresses = (request.get("Destination") or {}).get("ToAddresses") or []
        if len(addresses) != 1:
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
        return 200, {"MessageId": message_id}

    def sent(self, request: dict[str, Any], message_id: str) -> None:
        """moto took the e-mail: publish what SES would report for it."""
        addresses = (request.get("Destination") or {}).get("ToAddresses") or []
        if len(addresses) != 1 or not message_id:
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
        name = request.get("ConfigurationSetName")
        with self._lock:
            config = self._sets.get(name or "")
            topics = [(topic, types) for _, topic, types in config.topics] if config else []
            reasons = config.suppressed_reasons if config else ()
        tags = {t["Name"]: t["Value"] for t in request.get("EmailTags") or [] if isinstance(t, dict)}
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
                configuration_set=name or "",
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
