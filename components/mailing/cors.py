"""The mail API's CORS configuration, derived from what the API reads.

Plain Python (no Pulumi), because two readers need the same value: the program's HTTP API
(components/mailing/http_api.py) and the local stand-in of API Gateway (devstack/apigw.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from components.facts import MAILER

# The mailer states the request headers its API reads (app_code/mailer/mailer/__init__.py).
# The header the JWT authorizer takes the token from. API Gateway reads it, not the Lambda, so it is
# the program's fact; a browser sends it too, so CORS must allow it.
AUTHORIZER_HEADER = "Authorization"
# The send route takes a JSON body, and `Content-Type: application/json` is not a CORS-safelisted
# value (only the three form/text types are: Fetch standard, "CORS-safelisted request-header"), so a
# browser preflights it.
BODY_HEADER = "content-type"


@dataclass(frozen=True, slots=True)
class MailApiCors:
    """The HTTP API's CORS configuration, as API Gateway takes it. The local stand-in of API Gateway
    (devstack/apigw.py) is started with this same value, so both answer browsers alike."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    max_age: int


def mail_api_cors(origins: Sequence[str]) -> MailApiCors:
    """Browsers on `origins` may call the routes with exactly the headers the API and its authorizer
    read (plus the body's content type): no header the API ignores, none it documents left out."""
    headers = {AUTHORIZER_HEADER.lower(), BODY_HEADER, *(h.lower() for h in MAILER.request_headers)}
    return MailApiCors(
        allow_origins=tuple(origins),
        allow_methods=("GET", "POST", "OPTIONS"),
        allow_headers=tuple(sorted(headers)),
        max_age=600,
    )
