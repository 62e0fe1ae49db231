"""Fixtures for the mailing service: fresh resources per test on the shared local AWS API.

Every test gets its own queue, dead-letter queue and table (unique names), so tests never see each
other's messages; SES is shared, so e-mails are told apart by a unique token in the subject.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from mailer import api as mailer_api
from mailer import worker as mailer_worker
from motion_common.auth import TokenVerifier

from devstack.identity import Issuer
from devstack.mail_resources import create_mail_resources
from devstack.servers import MotoServer
from tests.services.mailer.support import Clients, MailEnv, Outbox


@pytest.fixture
def outbox(moto_server: MotoServer) -> Outbox:
    return Outbox(moto_server.endpoint)


@pytest.fixture(scope="session")
def aws_clients(moto_server: MotoServer) -> Clients:
    # Clients take their endpoint when built, so the environment only has to be right meanwhile.
    with pytest.MonkeyPatch.context() as patch:
        for key, value in moto_server.env().items():
            patch.setenv(key, value)
        clients = Clients(boto3.session.Session())
        for service in ("sqs", "sns", "dynamodb", "sesv2"):
            clients.client(service)
    return clients


@pytest.fixture
def make_mail_env(aws_env: dict[str, str], aws_clients: Clients) -> Callable[..., MailEnv]:
    def make(**kwargs: Any) -> MailEnv:
        token = uuid.uuid4().hex[:12]
        kwargs.setdefault("visibility_timeout", 30)
        resources = create_mail_resources(f"t-{token}", session=aws_clients, **kwargs)
        return MailEnv(resources=resources, session=aws_clients, token=token)

    return make


@pytest.fixture
def mail_env(make_mail_env: Callable[..., MailEnv]) -> MailEnv:
    return make_mail_env()


@pytest.fixture
def deployed(mail_env: MailEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailEnv]:
    """The module-level Lambda entry points configured from the environment, as in the cloud."""
    for key, value in mail_env.resources.env().items():
        monkeypatch.setenv(key, value)
    # Exactly the contract, whatever other tests left in this process's environment.
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    for key in ("SES_CONFIGURATION_SET", "MAX_RECIPIENTS"):
        monkeypatch.delenv(key, raising=False)
    mailer_api.reset()
    mailer_worker.reset()
    yield mail_env
    mailer_api.reset()
    mailer_worker.reset()


@pytest.fixture
def verifier(issuer: Issuer, jwks_url: str) -> TokenVerifier:
    return TokenVerifier(jwks_url=jwks_url, issuer=issuer.issuer, audience=issuer.audience)
