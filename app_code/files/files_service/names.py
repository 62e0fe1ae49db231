"""Turning untrusted names from clients into safe values.

The user's file name is metadata only: it never becomes part of an object key, but it ends up in
a Content-Disposition header that browsers use to name the saved file, so it is reduced to one
harmless path component.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from urllib.parse import quote

from files_service.settings import CONTENT_TYPE_RE

MAX_FILE_NAME_CHARS = 255
# Characters Windows refuses in file names, or that confuse header parsers.
_REPLACED = frozenset('<>:"|?*')
# Project ids become part of object keys (`uploads/{project_id}/...`) and user ids part of URLs.
PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
USER_ID_RE = re.compile(r"^[A-Za-z0-9_.@:|-]{1,128}$")
# Only the canonical form: uuid.UUID() also takes braces, URNs and bare hex, which the spec does not.
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def sanitize_file_name(raw: str) -> str:
    """The last path component of `raw`, without control characters; ValueError if nothing is left."""
    name = unicodedata.normalize("NFC", raw)
    # Either separator: a Windows client sends C:\fakepath\report.pdf.
    name = re.split(r"[\\/]", name)[-1]
    kept: list[str] = []
    for ch in name:
        category = unicodedata.category(ch)
        if category[0] == "C" or category in ("Zl", "Zp"):
            continue
        if category == "Zs":
            ch = " "
        kept.append("_" if ch in _REPLACED else ch)
    # Leading dots would make the saved file hidden, or `..` a parent reference.
    name = " ".join("".join(kept).split()).strip(" .")
    if not name:
        raise ValueError("file_name has no usable characters")
    if len(name) > MAX_FILE_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILE_NAME_CHARS - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:MAX_FILE_NAME_CHARS].rstrip(" .")
    return name


@functools.lru_cache(maxsize=4096)
def content_disposition(file_name: str) -> str:
    """An attachment disposition: an ASCII fallback for old clients plus the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(ch if " " <= ch < "\x7f" and ch not in '"\\%' else "_" for ch in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def normalize_content_type(raw: str) -> str:
    """A bare lower-case type/subtype; ValueError for anything else (parameters are refused)."""
    value = raw.strip().lower()
    if "*" in value or not CONTENT_TYPE_RE.match(value):
        raise ValueError(f"content_type must be a media type like 'application/pdf', got {raw[:100]!r}")
    return value


def content_type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    return content_type in allowed or content_type.split("/", 1)[0] + "/*" in allowed
