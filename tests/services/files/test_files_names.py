"""Untrusted names: properties that must hold for any input, and the header they end up in."""

from __future__ import annotations

import re

import pytest
from files_service.names import (
    MAX_FILE_NAME_CHARS,
    content_disposition,
    content_type_allowed,
    normalize_content_type,
    sanitize_file_name,
)
from hypothesis import given
from hypothesis import strategies as st


@given(st.text(min_size=1, max_size=400))
def test_sanitized_names_are_one_harmless_component(raw: str) -> None:
    try:
        name = sanitize_file_name(raw)
    except ValueError:
        return
    assert name
    assert len(name) <= MAX_FILE_NAME_CHARS
    assert "/" not in name and "\\" not in name
    assert not name.startswith(".") and not name.endswith((".", " "))
    assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029\u202e\ud800-\udfff]", name)
    assert not set('<>:"|?*') & set(name)
    # Idempotent: a stored name passes through unchanged when stored again.
    assert sanitize_file_name(name) == name


@given(st.text(min_size=1, max_size=300))
def test_disposition_header_is_always_a_single_safe_header_value(raw: str) -> None:
    try:
        name = sanitize_file_name(raw)
    except ValueError:
        return
    header = content_disposition(name)
    header.encode("ascii")  # header values must be ASCII
    fallback = re.fullmatch(
        r"attachment; filename=\"([^\"\\]*)\"; filename\*=UTF-8''([A-Za-z0-9%._~-]*)", header
    )
    assert fallback is not None, header


def test_long_names_keep_their_extension() -> None:
    name = sanitize_file_name("a" * 600 + ".tar.gz")
    assert len(name) == MAX_FILE_NAME_CHARS and name.endswith(".gz")


@pytest.mark.parametrize(
    ("raw", "normalized"), [("Application/PDF", "application/pdf"), (" image/png ", "image/png")]
)
def test_content_types_are_normalized(raw: str, normalized: str) -> None:
    assert normalize_content_type(raw) == normalized


@pytest.mark.parametrize(
    "raw", ["pdf", "text/plain; charset=utf-8", "image/*", "*/*", "", "a/b/c", "text/pl ain"]
)
def test_malformed_content_types_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="media type"):
        normalize_content_type(raw)


def test_allowed_list_supports_families() -> None:
    allowed = ("image/*", "application/pdf")
    assert content_type_allowed("image/webp", allowed)
    assert content_type_allowed("application/pdf", allowed)
    assert not content_type_allowed("application/zip", allowed)
    assert not content_type_allowed("imagex/png", allowed)
