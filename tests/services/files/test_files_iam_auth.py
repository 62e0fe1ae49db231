"""The files services' database login survives credential rotation: IAM database authentication as
the application role, a token per new connection, TLS verified against the CA (verify-full).

Locally, devstack/rds_iam.py stands in for RDS's token check and devstack/credentials.py for the
task role's credentials endpoint; the service runs its real entry point against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import botocore.session
import httpx
import pytest
from files_service.database_roles import APP_ROLE
from files_service.migrator import SchemaNotReady, check_schema, load_migrations, migrate

from components.aws.interpreters import find_python
from components.aws.lambda_layer import LAYER_PYTHON
from devstack.credentials import CredentialsEndpoint
from devstack.identity import Issuer
from devstack.rds_iam import RdsIamProxy, TokenRejected, check_token
from devstack.servers import LOCALHOST, MotoServer, PostgresServer, free_port
from tests.services.files.conftest import (
    ServiceProcess,
    bearer,
    create_database,
    service_env,
)
from tests.services.files.test_files_flow import post_form, request_upload

REGION = "us-east-1"
ENDPOINT = "db.local:5432"
KEYS = {"ASIAEXAMPLE1": ("secret-one", "session-one")}


def botocore_token(
    *, host: str = "db.local", port: int = 5432, user: str = APP_ROLE, key: str = "ASIAEXAMPLE1"
) -> str:
    """A token as the services make it: botocore's generate_db_auth_token."""
    secret, session = KEYS.get(key, ("other-secret", "other-session"))
    session_ = botocore.session.Session()
    session_.set_credentials(key, secret, session)
    client = session_.create_client("rds", region_name=REGION)
    return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=REGION))


def test_tokens_botocore_makes_are_accepted_for_their_user_and_endpoint() -> None:
    accepted = check_token(botocore_token(), endpoint=ENDPOINT, user=APP_ROLE, region=REGION, secrets=KEYS)
    assert accepted.access_key == "ASIAEXAMPLE1" and accepted.user == APP_ROLE


@pytest.mark.parametrize(
    ("token_args", "check_args", "reason"),
    [
        ({"user": "postgres"}, {}, "does not allow connecting as files_app"),
        ({"host": "other.db"}, {}, "not for db.local:5432"),
        ({"port": 6432}, {}, "not for db.local:5432"),
        ({"key": "ASIAREVOKED"}, {}, "unknown or revoked credentials"),
        ({}, {"region": "eu-west-1"}, "not scoped to rds-db in eu-west-1"),
        # 16 minutes after signing (a timedelta: resolved when the test runs, not when it is collected).
        ({}, {"now": dt.timedelta(minutes=16)}, "expired"),
        ({}, {"now": -dt.timedelta(minutes=6)}, "not valid yet"),
        ({}, {"secrets": {"ASIAEXAMPLE1": ("secret-one", "another-session")}}, "session token"),
        ({}, {"secrets": {"ASIAEXAMPLE1": ("wrong-secret", "session-one")}}, "signature does not match"),
    ],
)
def test_misdirected_forged_or_expired_tokens_are_refused(
    token_args: dict[str, Any], check_args: dict[str, Any], reason: str
) -> None:
    kwargs: dict[str, Any] = {"endpoint": ENDPOINT, "user": APP_ROLE, "region": REGION, "secrets": KEYS}
    if isinstance(check_args.get("now"), dt.timedelta):
        check_args = {**check_args, "now": dt.datetime.now(dt.UTC) + check_args["now"]}
    with pytest.raises(TokenRejected, match=reason):
        check_token(botocore_token(**token_args), **{**kwargs, **check_args})


def test_a_tampered_token_is_refused() -> None:
    token = botocore_token()
    with pytest.raises(TokenRejected, match="signature"):
        check_token(token.replace("X-Amz-Expires=900", "X-Amz-Expires=899"), **_defaults())
    with pytest.raises(TokenRejected):
        check_token("not a token", **_defaults())


def _defaults() -> dict[str, Any]:
    return {"endpoint": ENDPOINT, "user": APP_ROLE, "region": REGION, "secrets": KEYS}


def rds_iam_proxy(postgres: PostgresServer, credentials: CredentialsEndpoint) -> RdsIamProxy:
    """The RDS IAM stand-in in front of `postgres`, trusting what `credentials` has handed out."""
    assert postgres.tls is not None
    return RdsIamProxy(
        port=free_port(),
        socket_dir=postgres.socket_dir,
        upstream_port=postgres.port,
        certfile=postgres.tls.cert_file,
        keyfile=postgres.tls.key_file,
        region=REGION,
        secrets=credentials.valid,
    )


@pytest.fixture
def iam_stack(postgres: PostgresServer) -> Iterator[tuple[CredentialsEndpoint, RdsIamProxy, str]]:
    """A migrated database, the credentials endpoint and the RDS IAM stand-in in front of `postgres`."""
    database = create_database(postgres)
    assert postgres.tls is not None
    with CredentialsEndpoint(free_port()) as credentials, rds_iam_proxy(postgres, credentials) as proxy:
        yield credentials, proxy, database


def iam_env(
    base: dict[str, str], credentials: CredentialsEndpoint, proxy: RdsIamProxy, ca_file: Path
) -> dict[str, str]:
    """The task definition's database settings (components/files/files.py), with the local stand-ins; AWS
    credentials only from the credentials endpoint, as a task's come from its role."""
    env = {
        k: v
        for k, v in base.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DATABASE_PASSWORD")
    }
    return {
        **env,
        **credentials.env(),
        "AWS_REGION": REGION,
        "DATABASE_AUTH": "iam",
        "DATABASE_USER": APP_ROLE,
        "DATABASE_HOST": LOCALHOST,
        "DATABASE_PORT": str(proxy.port),
        "DATABASE_SSLMODE": "verify-full",
        "DATABASE_SSLROOTCERT": str(ca_file),
    }


def start_iam_service(
    postgres: PostgresServer,
    database: str,
    moto: MotoServer,
    bucket: str,
    issuer: Issuer,
    jwks_url: str,
    credentials: CredentialsEndpoint,
    proxy: RdsIamProxy,
    tmp_path: Path,
) -> ServiceProcess:
    """`python -m files_service` logging in through `proxy` with tokens signed by `credentials`."""
    assert postgres.tls is not None
    base = service_env(
        server=postgres, database=database, moto=moto, bucket=bucket, issuer=issuer, jwks_url=jwks_url
    )
    return ServiceProcess(
        iam_env(base, credentials, proxy, postgres.tls.ca_file), tmp_path / "files.log"
    ).start()


def upload_and_download(service: ServiceProcess, issuer: Issuer, s3: Any, bucket: str, name: str) -> None:
    """One full flow: every query the services make on the way (insert, complete, list, download)."""
    owner = issuer.mint("user_owner", ["proj-iam"])
    content = f"{name}\n".encode()
    ticket = request_upload(
        service.url, owner, name=name, content_type="text/plain", size=len(content), project="proj-iam"
    )
    assert post_form(ticket["upload"], content, "text/plain").status_code in (200, 201, 204)
    key = ticket["upload"]["fields"]["key"]
    s3.put_object_tagging(
        Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "upload-state", "Value": "pending"}]}
    )
    file_id = ticket["file"]["id"]
    done = httpx.post(f"{service.url}/files/v1/uploads/{file_id}/complete", headers=bearer(owner))
    assert done.status_code == 200, done.text
    listed = httpx.get(f"{service.url}/files/v1/projects/proj-iam/files", headers=bearer(owner))
    assert file_id in [f["id"] for f in listed.json()["files"]]
    download = httpx.get(f"{service.url}/files/v1/files/{file_id}/download", headers=bearer(owner))
    assert httpx.get(download.json()["url"]).content == content


def terminate_app_connections(server: PostgresServer, database: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(server.dsn)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1 AND datname = $2",
                    APP_ROLE,
                    database,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(run())


def test_the_running_service_keeps_working_while_its_credentials_rotate(
    iam_stack: tuple[CredentialsEndpoint, RdsIamProxy, str],
    postgres: PostgresServer,
    moto_server: MotoServer,
    files_bucket: str,
    issuer: Issuer,
    jwks_url: str,
    s3: Any,
    tmp_path: Path,
) -> None:
    credentials, proxy, database = iam_stack
    assert postgres.tls is not None
    service = start_iam_service(
        postgres, database, moto_server, files_bucket, issuer, jwks_url, credentials, proxy, tmp_path
    )
    try:
        upload_and_download(service, issuer, s3, files_bucket, "before.txt")
        first = credentials.current.access_key
        assert {a.access_key for a in proxy.accepted} == {first}
        assert {a.user for a in proxy.accepted} == {APP_ROLE}

        for round_ in range(2):
            # The task role's credentials change and the old ones stop working; every open
            # connection is cut, as a fail-over or the pool's idle timeout would.
            rotated = credentials.rotate().access_key
            # Counted before the cut: the pool may log in again at once to restore its floor.
            before = len(proxy.accepted)
            assert terminate_app_connections(postgres, database) >= 1
            upload_and_download(service, issuer, s3, files_bucket, f"after-{round_}.txt")
            new_logins = proxy.accepted[before:]
            assert new_logins and {a.access_key for a in new_logins} == {rotated}
        assert proxy.refused == []
    finally:
        service.stop()
    assert "Traceback" not in service.log_path.read_text()


def test_the_application_role_cannot_log_in_any_other_way_nor_change_the_schema(
    iam_stack: tuple[CredentialsEndpoint, RdsIamProxy, str], postgres: PostgresServer
) -> None:
    credentials, proxy, database = iam_stack
    assert postgres.tls is not None
    tls = ssl.create_default_context(cafile=str(postgres.tls.ca_file))

    async def run() -> None:
        # Straight to PostgreSQL over TCP: the role has no password, so nothing lets it in.
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=LOCALHOST, port=postgres.port, user=APP_ROLE, password="guess", database=database
            )
        # Through the stand-in with a password instead of a token, or a token for another user.
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=LOCALHOST, port=proxy.port, user=APP_ROLE, password="guess", database=database, ssl=tls
            )
        # Without TLS, as RDS refuses IAM logins without it.
        with pytest.raises(asyncpg.PostgresError, match="requires an SSL connection"):
            await asyncpg.connect(
                host=LOCALHOST, port=proxy.port, user=APP_ROLE, password="x", database=database, ssl=False
            )

        session = botocore.session.Session()
        issued = credentials.current
        session.set_credentials(issued.access_key, issued.secret_key, issued.session_token)
        rds = session.create_client("rds", region_name=REGION)

        def token(user: str = APP_ROLE) -> str:
            return str(
                rds.generate_db_auth_token(
                    DBHostname=LOCALHOST, Port=proxy.port, DBUsername=user, Region=REGION
                )
            )

        # A valid token, but for another database user.
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=LOCALHOST,
                port=proxy.port,
                user=APP_ROLE,
                password=token("motion"),
                database=database,
                ssl=tls,
            )

        conn = await asyncpg.connect(
            host=LOCALHOST, port=proxy.port, user=APP_ROLE, password=token, database=database, ssl=tls
        )
        try:
            # What the services need works; changing the schema or the migration record does not.
            assert await conn.fetchval("SELECT count(*) FROM files") == 0
            await check_schema(conn)
            for statement in (
                "CREATE TABLE intruder (id int)",
                "DROP TABLE file_shares",
                "ALTER TABLE files ADD COLUMN x int",
                "DELETE FROM files_schema_migrations",
                "CREATE ROLE another LOGIN",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())
    assert len(proxy.refused) == 2


def test_a_service_on_an_unmigrated_database_refuses_to_start_naming_the_step(
    postgres: PostgresServer,
    moto_server: MotoServer,
    files_bucket: str,
    issuer: Issuer,
    jwks_url: str,
    tmp_path: Path,
) -> None:
    database = create_database(postgres, migrated=False)
    env = service_env(
        server=postgres,
        database=database,
        moto=moto_server,
        bucket=files_bucket,
        issuer=issuer,
        jwks_url=jwks_url,
    )
    with pytest.raises(RuntimeError) as err:
        ServiceProcess(env, tmp_path / "files.log").start(ready_timeout=20)
    assert "run the migration step (python -m files_service.migrate)" in str(err.value)

    async def partly() -> None:
        # One migration short: still refused, naming the missing one.
        conn = await asyncpg.connect(postgres.dsn.rsplit("/", 1)[0] + f"/{database}")
        try:
            migrations = load_migrations()
            await migrate(conn, migrations[:-1])
            with pytest.raises(SchemaNotReady, match=f"{migrations[-1].version:04d}_{migrations[-1].name}"):
                await check_schema(conn)
        finally:
            await conn.close()

    asyncio.run(partly())


def set_rds_iam(server: PostgresServer, granted: bool) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(server.dsn)
        try:
            verb = "GRANT rds_iam TO" if granted else "REVOKE rds_iam FROM"
            await conn.execute(f"{verb} {APP_ROLE}")
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_role_without_rds_iam_or_a_malformed_token_is_refused_as_rds_refuses_it(
    iam_stack: tuple[CredentialsEndpoint, RdsIamProxy, str], postgres: PostgresServer
) -> None:
    credentials, proxy, database = iam_stack
    assert postgres.tls is not None
    tls = ssl.create_default_context(cafile=str(postgres.tls.ca_file))
    issued = credentials.current
    session = botocore.session.Session()
    session.set_credentials(issued.access_key, issued.secret_key, issued.session_token)
    rds = session.create_client("rds", region_name=REGION)

    def token() -> str:
        return str(
            rds.generate_db_auth_token(
                DBHostname=LOCALHOST, Port=proxy.port, DBUsername=APP_ROLE, Region=REGION
            )
        )

    async def login(password: Any) -> None:
        conn = await asyncpg.connect(
            host=LOCALHOST, port=proxy.port, user=APP_ROLE, password=password, database=database, ssl=tls
        )
        await conn.close()

    # RDS checks the token only for roles granted rds_iam: without the grant, a valid token fails.
    set_rds_iam(postgres, granted=False)
    try:
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(login(token))
        assert proxy.refused[-1] == f"{APP_ROLE} is not granted rds_iam"
    finally:
        set_rds_iam(postgres, granted=True)
    asyncio.run(login(token))
    # A malformed token is a refused login (FATAL 28P01), not a dropped connection.
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(login(f"{LOCALHOST}:{proxy.port}/?a"))
    assert proxy.refused[-1] == "token is not a query string"


def test_the_local_ca_passes_python_3_13s_strict_verification(postgres: PostgresServer) -> None:
    # The images run 3.13, whose default context sets VERIFY_X509_STRICT (key identifiers required).
    assert postgres.tls is not None
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(postgres.tls.cert_file, postgres.tls.key_file)
    listener = socket.create_server((LOCALHOST, 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(ssl.SSLError, OSError), server.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    check = (
        "import socket, ssl, sys; ctx = ssl.create_default_context(cafile=sys.argv[1]);"
        "assert ctx.verify_flags & ssl.VERIFY_X509_STRICT;"
        "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[2]))), server_hostname='127.0.0.1');"
        "print(s.version()); s.close()"
    )
    done = subprocess.run(
        [str(find_python(LAYER_PYTHON)), "-I", "-c", check, str(postgres.tls.ca_file), str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    listener.close()
    thread.join(5)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("TLSv1.")


def test_credentials_that_cannot_be_refreshed_make_503_not_500_and_recover(
    postgres: PostgresServer,
    moto_server: MotoServer,
    files_bucket: str,
    issuer: Issuer,
    jwks_url: str,
    tmp_path: Path,
) -> None:
    database = create_database(postgres)
    assert postgres.tls is not None
    port = free_port()
    # Credentials within botocore's mandatory refresh window: each signature must fetch new ones.
    credentials = CredentialsEndpoint(port, lifetime=dt.timedelta(minutes=5)).start()
    with rds_iam_proxy(postgres, credentials) as proxy:
        service = start_iam_service(
            postgres, database, moto_server, files_bucket, issuer, jwks_url, credentials, proxy, tmp_path
        )
        owner = issuer.mint("user_owner", ["proj-iam"])
        listing = f"{service.url}/files/v1/projects/proj-iam/files"
        try:
            assert httpx.get(listing, headers=bearer(owner)).status_code == 200
            credentials.stop()  # the credentials endpoint goes away
            terminate_app_connections(postgres, database)
            down = httpx.get(listing, headers=bearer(owner), timeout=30)
            assert down.status_code == 503 and "Retry-After" in down.headers, down.text
            credentials = CredentialsEndpoint(port, lifetime=dt.timedelta(minutes=5)).start()
            proxy.secrets = credentials.valid
            assert httpx.get(listing, headers=bearer(owner), timeout=30).status_code == 200
        finally:
            service.stop()
            credentials.stop()
    # botocore logs its failed refreshes (with its own tracebacks); the service handled every request
    # (no "unhandled error", which is what a 500 logs: files_service.app._internal_error).
    log = service.log_path.read_text()
    assert "Refreshing temporary credentials failed" in log and "unhandled error" not in log
