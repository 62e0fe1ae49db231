"""What a browser does around a cross-origin request, so tests can act as one: which request headers
make it send a preflight, the preflight it sends, and whether it accepts the answers.

Ported from the Fetch standard (https://fetch.spec.whatwg.org/), for requests whose credentials
mode is not "include" (fetch's default; the frontend sends its token in `Authorization`, not in a
cookie):
- "CORS-safelisted request-header": `accept`, `accept-language`, `content-language`, and
  `content-type` only when its essence is `application/x-www-form-urlencoded`,
  `multipart/form-data` or `text/plain` (the value-byte limits of the standard are not ported: the
  tests send short, plain values);
- "CORS-unsafe request-header names": the other names, lower-cased, sorted, without duplicates;
  "CORS-preflight fetch" sends them as `Access-Control-Request-Headers`, joined by "," with no space,
  with `Origin` and `Access-Control-Request-Method`;
- the preflight's answer is accepted only if the "CORS check" succeeds and its status is an ok status
  (200-299), the method is listed in `Access-Control-Allow-Methods` or is a CORS-safelisted method
  (GET, HEAD, POST) or the list holds `*`, `Authorization` (the "CORS non-wildcard request-header
  name") is listed by name, and every other unsafe name is listed or the list holds `*`;
- "CORS check": `Access-Control-Allow-Origin` must be present and be `*` or the request's origin.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
_SAFELISTED_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)


def _is_safelisted(name: str, value: str) -> bool:
    name = name.lower()
    if name in ("accept", "accept-language", "content-language"):
        return True
    if name == "content-type":
        return value.split(";", 1)[0].strip().lower() in _SAFELISTED_CONTENT_TYPES
    return False


def unsafe_header_names(headers: Mapping[str, str]) -> list[str]:
    return sorted({name.lower() for name, value in headers.items() if not _is_safelisted(name, value)})


def needs_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method not in SAFELISTED_METHODS or bool(unsafe_header_names(headers))


def preflight_request(origin: str, method: str, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of the OPTIONS request a browser sends before `method` with `headers`."""
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    unsafe = unsafe_header_names(headers)
    if unsafe:
        sent["Access-Control-Request-Headers"] = ",".join(unsafe)
    return sent


def _list(response: httpx.Response, name: str) -> list[str]:
    return [item.strip() for item in response.headers.get(name, "").split(",") if item.strip()]


def cors_check(response: httpx.Response, origin: str) -> bool:
    allowed = response.headers.get("access-control-allow-origin")
    return allowed is not None and allowed in ("*", origin)


def preflight_grants(response: httpx.Response, origin: str, method: str, headers: Mapping[str, str]) -> bool:
    """Whether a browser, given this answer to its preflight, goes on to send the request."""
    if not (cors_check(response, origin) and 200 <= response.status_code <= 299):
        return False
    methods = _list(response, "access-control-allow-methods")
    if method not in methods and method not in SAFELISTED_METHODS and "*" not in methods:
        return False
    names = {name.lower() for name in _list(response, "access-control-allow-headers")}
    sent = {name.lower() for name in headers}
    if "authorization" in sent and "authorization" not in names:
        return False
    return all(name in names or "*" in names for name in unsafe_header_names(headers))
