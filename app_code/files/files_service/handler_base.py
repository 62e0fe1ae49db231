"""What every handler shares: the dependencies the app's lifespan opens, the token check, and the
"only a current member (or the owner, while a member) may" checks.

Project membership is a claim of the caller's session token and nothing else, so it is checked on
every request, owners included: owning a file grants nothing once its owner has left the project.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from motion_common.auth import AuthError, Identity, TokenVerifier
from motion_common.metrics import Metrics
from starlette.requests import Request

from files_service import metric_names
from files_service.db import Database
from files_service.request_parsing import path_file_id
from files_service.responses import ApiError
from files_service.routes import AUTHORIZATION_HEADER
from files_service.settings import Settings
from files_service.signer import S3Signer
from files_service.storage import ObjectStore

LEFT_PROJECT = (
    "you are not a member of the file's project (any more): owning a file grants nothing without it"
)


class HandlerBase:
    """The handlers' state; `start` supplies the dependencies once the app's lifespan has opened them."""

    db: Database
    signer: S3Signer
    storage: ObjectStore | None
    verifier: TokenVerifier

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(
            metric_names.NAMESPACE, {metric_names.DIMENSION: metric_names.dimension_value(settings.role)}
        )
        self.ttl = settings.presign_ttl_seconds
        self._ttl_delta = timedelta(seconds=self.ttl)

    def start(
        self, db: Database, signer: S3Signer, storage: ObjectStore | None, verifier: TokenVerifier
    ) -> None:
        self.db = db
        self.signer = signer
        self.storage = storage
        self.verifier = verifier

    def _identity(self, request: Request) -> Identity:
        try:
            return self.verifier.verify_header(request.headers.get(AUTHORIZATION_HEADER))
        except AuthError as err:
            raise ApiError(401, str(err), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from err

    async def _owned_file(self, request: Request) -> tuple[Identity, asyncpg.Record]:
        identity = self._identity(request)
        file_id = path_file_id(request)
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        if row["owner_id"] != identity.user_id:
            raise ApiError(403, "only the file's owner may do this")
        if not identity.member_of(row["project_id"]):
            raise ApiError(403, LEFT_PROJECT)
        return identity, row

    async def _member_file(self, request: Request) -> tuple[Identity, asyncpg.Record]:
        """The file, if the caller is a current member of its project (owner or not)."""
        identity = self._identity(request)
        file_id = path_file_id(request)
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        if not identity.member_of(row["project_id"]):
            raise ApiError(403, "only members of the file's project may do this")
        return identity, row
