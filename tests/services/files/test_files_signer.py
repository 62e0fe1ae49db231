"""The SigV4 signer against botocore: byte-for-byte the same URLs and POST forms for the same
credentials, inputs and instant, and the daily key cache never serves a stale key."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.auth
import botocore.signers
import pytest
from botocore.config import Config
from files_service.names import content_disposition
from files_service.signer import Credentials, S3Signer

INSTANTS = [
    datetime(2025, 3, 9, 23, 59, 59, tzinfo=UTC),
    datetime(2025, 3, 10, 0, 0, 0, 250_000, tzinfo=UTC),
    datetime(2028, 2, 29, 12, 30, 5, tzinfo=UTC),
]
CREDENTIALS = [
    Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None),
    Credentials("ASIAEXAMPLE", "secret/with+chars=", "FwoGZXIvYXdzE//////////wEaDN+/=token"),
]
KEYS = [
    "uploads/proj_1/123e4567-e89b-12d3-a456-426614174000",
    "uploads/odd key/ünï ~!$&'()*+,;=:@%.txt",
]
PENDING_TAGGING = (
    "<Tagging><TagSet><Tag><Key>upload-state</Key><Value>pending</Value></Tag></TagSet></Tagging>"
)


def freeze_botocore(monkeypatch: pytest.MonkeyPatch, instant: datetime) -> None:
    """botocore reads the clock itself (naive UTC); pin it so both signers sign the same instant."""
    naive = instant.astimezone(UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive)
    monkeypatch.setattr(botocore.signers, "get_current_datetime", lambda *a, **k: naive)


@functools.cache
def boto_client(creds: Credentials, region: str, endpoint: str | None) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
        region_name=region,
    )
    config = Config(
        # Only what is passed here counts, whatever AWS_ENDPOINT_URL the test process has.
        ignore_configured_endpoint_urls=True,
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint else "virtual", "us_east_1_regional_endpoint": "regional"},
    )
    return session.client("s3", endpoint_url=endpoint, config=config)


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("creds", CREDENTIALS, ids=["static", "session-token"])
@pytest.mark.parametrize(
    ("region", "endpoint"),
    [("eu-west-1", None), ("us-east-1", None), ("us-east-1", "http://127.0.0.1:5123")],
    ids=["virtual-eu", "virtual-us-east-1", "path-local"],
)
@pytest.mark.parametrize("key", KEYS, ids=["plain", "odd"])
def test_presigned_get_matches_botocore(
    monkeypatch: pytest.MonkeyPatch,
    instant: datetime,
    creds: Credentials,
    region: str,
    endpoint: str | None,
    key: str,
) -> None:
    freeze_botocore(monkeypatch, instant)
    disposition = content_disposition('Q3 "report" ünï.pdf')
    expected = boto_client(creds, region, endpoint).generate_presigned_url(
        "get_object",
        Params={"Bucket": "motion-files", "Key": key, "ResponseContentDisposition": disposition},
        ExpiresIn=300,
    )
    signer = S3Signer("motion-files", region, lambda: creds, endpoint)
    got = signer.presign_get(key, 300, {"response-content-disposition": disposition}, instant)
    assert got == expected


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("creds", CREDENTIALS, ids=["static", "session-token"])
@pytest.mark.parametrize(
    ("region", "endpoint"),
    [("eu-central-1", None), ("us-east-1", "http://127.0.0.1:5123")],
    ids=["virtual", "path-local"],
)
@pytest.mark.parametrize("tagging", [None, PENDING_TAGGING], ids=["untagged", "tagged"])
def test_presigned_post_matches_botocore(
    monkeypatch: pytest.MonkeyPatch,
    instant: datetime,
    creds: Credentials,
    region: str,
    endpoint: str | None,
    tagging: str | None,
) -> None:
    freeze_botocore(monkeypatch, instant)
    key = KEYS[0]
    fields = {"Content-Type": "application/pdf"}
    conditions: list[Any] = [{"Content-Type": "application/pdf"}, ["content-length-range", 1234, 1234]]
    if tagging is not None:
        fields["tagging"] = tagging
        conditions.append({"tagging": tagging})
    expected = boto_client(creds, region, endpoint).generate_presigned_post(
        "motion-files", key, Fields=fields, Conditions=conditions, ExpiresIn=120
    )
    signer = S3Signer("motion-files", region, lambda: creds, endpoint)
    post = signer.presign_post(key, "application/pdf", 1234, 1234, 120, instant, tagging=tagging)
    assert post.url == expected["url"]
    # Order too: S3 needs the fields before the file, and clients send them in the order given.
    assert list(post.fields.items()) == list(expected["fields"].items())
    assert post.expires_at == (instant + timedelta(seconds=120)).replace(microsecond=0)


def test_post_policy_pins_key_type_size_and_expiry() -> None:
    instant = INSTANTS[2]
    creds = CREDENTIALS[1]
    post = S3Signer("motion-files", "eu-west-1", lambda: creds).presign_post(
        "uploads/p/f", "image/png", 10, 20, 300, instant, tagging=PENDING_TAGGING
    )
    policy = json.loads(base64.b64decode(post.fields["policy"]))
    assert policy["expiration"] == "2028-02-29T12:35:05Z"
    conditions = policy["conditions"]
    assert {"key": "uploads/p/f"} in conditions
    assert {"bucket": "motion-files"} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 10, 20] in conditions
    assert {"x-amz-security-token": creds.token} in conditions
    # The tags are an exact match, so a client can neither drop nor change them.
    assert post.fields["tagging"] == PENDING_TAGGING
    assert [c for c in conditions if "tagging" in c] == [{"tagging": PENDING_TAGGING}]
    # Nothing looser, such as a starts-with on the key, is allowed in.
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"]


def test_signing_key_follows_date_and_rotated_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """One cached key per (secret, day): a new day or a rotated secret must not reuse the old key."""
    current = [CREDENTIALS[0]]
    signer = S3Signer("motion-files", "eu-west-1", lambda: current[0])
    key = KEYS[0]
    for instant, creds in [
        (INSTANTS[0], CREDENTIALS[0]),
        (INSTANTS[1], CREDENTIALS[0]),  # next day, same secret
        (INSTANTS[1], CREDENTIALS[1]),  # same day, rotated secret
        (INSTANTS[0], CREDENTIALS[1]),  # back to the previous day
    ]:
        current[0] = creds
        freeze_botocore(monkeypatch, instant)
        expected = boto_client(creds, "eu-west-1", None).generate_presigned_url(
            "get_object", Params={"Bucket": "motion-files", "Key": key}, ExpiresIn=60
        )
        assert signer.presign_get(key, 60, None, instant) == expected
