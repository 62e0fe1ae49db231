"""The whole Motion backend on one machine, on 127.0.0.1 only: a local AWS API with the cloud's
resources, PostgreSQL, Redis, the Upload and Download services, the mail API behind a JWT-checking
gateway plus the SQS pollers that feed the mailer and SES events handlers, an SES stand-in that
publishes SES's sending events (devstack/ses.py), and two chat instances sharing Redis.

Each service runs the same entry point its cloud deployment runs and gets its settings through the
same environment variables (`service_environments` is checked against the task definitions and
Lambda environments by tests/e2e/test_contract.py).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3

from components.app_code import development_pythonpath, pythonpath
from components.chat import chat_environment
from components.chat import table_name as chat_table_name
from components.config.model import (
    MAIL_MAX_RECIPIENTS,
    StackConfig,
)
from components.facts import CHAT, FILES
from components.mailing.cors import MailApiCors, mail_api_cors
from devstack.apigw import WEBHOOK_ROUTE, cors_argument
from devstack.credentials import CredentialsEndpoint
from devstack.identity import ClerkWebhooks, Issuer, JwksServer
from devstack.mail_resources import MailResources, create_mail_resources, publish_ses_events
from devstack.rds_iam import RdsIamProxy
from devstack.servers import (
    LOCALHOST,
    MotoServer,
    PostgresServer,
    RedisServer,
    ServerError,
    free_port,
    pick_port,
    port_is_free,
)
from devstack.ses import SesStandIn
from devstack.supervisor import Dependency, Service, Supervisor
from stacktools.stack_files import load_stack_file

REPO = Path(__file__).resolve().parents[1]
STATE_FILE = REPO / ".devstack" / "state.json"
# The local backend mirrors the dev stack: the same resource names and the same settings, read from
# Pulumi.dev.yaml through the same loader the program uses.
STACK = "dev"
DEMO_PROJECT = "demo-project"
DEMO_USERS = ("demo-alice", "demo-bob")
# The services' fixed ports, so a frontend's .env.local keeps working across runs.
SERVICE_PORTS = {
    "aws": 0,
    "jwks": 1,
    "upload": 2,
    "download": 3,
    "mail-api": 4,
    "chat-a": 5,
    "chat-b": 6,
    "files": 7,
    "ses": 8,
}
DEFAULT_PORT_BASE = 8700
FILES_DATABASE = "motion_files"
APP_ROLE: str = FILES.app_role
MIGRATE_MODULE: str = FILES.migrate_module


def free_port_base() -> int:
    """A run of free ports for the services, away from a developer's `make run` (tests, benchmarks)."""
    span = max(SERVICE_PORTS.values()) + 1
    for _ in range(200):
        base = pick_port(span)
        if all(port_is_free(base + offset) for offset in SERVICE_PORTS.values()):
            return base
    raise BackendError("no run of free ports found")


class BackendError(RuntimeError):
    """The backend could not start; the message says what and what to do."""


@dataclass(frozen=True)
class SpawnSpec:
    """How a service was started, kept so that a restart runs exactly the same process."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path


@dataclass
class State:
    """What `make run` prints and `make smoke` / `devstack.mint` read: URLs and the signing key."""

    urls: dict[str, str]
    aws_endpoint: str
    bucket: str
    mail_table: str
    mail_queue_url: str
    mail_dlq_url: str
    chat_table: str
    issuer_file: str
    demo_project: str = DEMO_PROJECT
    # The Clerk webhook signing secret (a file beside the issuer's key, mode 0600), so that
    # `make smoke` and tests can sign up users the way Clerk's webhooks do.
    webhook_secret_file: str = ""

    def save(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path = STATE_FILE) -> State:
        if not path.exists():
            raise BackendError(f"no running backend ({path} is missing): start one with `make run`")
        return cls(**json.loads(path.read_text()))

    def issuer(self) -> Issuer:
        return Issuer.load(Path(self.issuer_file))

    def clerk(self) -> ClerkWebhooks:
        """Clerk's webhooks to this backend's mail service (users created there enter its directory)."""
        path = WEBHOOK_ROUTE.partition(" ")[2]
        return ClerkWebhooks(
            url=f"{self.urls['mail-api']}{path}", secret=Path(self.webhook_secret_file).read_text().strip()
        )


@dataclass
class Backend:
    port_base: int = DEFAULT_PORT_BASE
    log_dir: Path | None = None
    state_file: Path | None = STATE_FILE
    quiet: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    spawned: dict[str, SpawnSpec] = field(default_factory=dict)
    aws_resources: dict[str, Any] = field(default_factory=dict)
    _tmp: Path | None = None
    moto: MotoServer | None = None
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    jwks: JwksServer | None = None
    ses: SesStandIn | None = None
    credentials: CredentialsEndpoint | None = None
    rds_iam: RdsIamProxy | None = None
    state: State | None = None

    def port(self, name: str) -> int:
        return self.port_base + SERVICE_PORTS[name]

    def url(self, name: str) -> str:
        return f"http://{LOCALHOST}:{self.port(name)}"

    @functools.cached_property
    def config(self) -> StackConfig:
        return load_stack_file(STACK)

    @property
    def mail_api_cors(self) -> MailApiCors:
        """The CORS configuration the program gives the mail API's HTTP API in this stack."""
        return mail_api_cors(self.config.frontend.origins)

    def check_ports(self) -> None:
        taken = [f"{self.port(n)} ({n})" for n in SERVICE_PORTS if not port_is_free(self.port(n))]
        if taken:
            raise BackendError(
                f"port(s) already in use on {LOCALHOST}: {', '.join(taken)}. Stop what holds them "
                f"(another `make run`?) or choose other ports: make run PORT_BASE=<n> (now {self.port_base})"
            )

    def start(self, timeout: float = 90.0) -> State:
        started = time.monotonic()
        self.check_ports()
        self._tmp = tmp = Path(tempfile.mkdtemp(prefix="motion-local-"))
        self.log_dir = self.log_dir or tmp / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.moto = MotoServer(port=self.port("aws")).start()
            # SES as the mailer meets it in the cloud: sending events, the suppression list.
            self.ses = SesStandIn(self.moto.endpoint, port=self.port("ses"), region=self.config.region)
            self.ses.__enter__()
            self.postgres = postgres = PostgresServer(database=FILES_DATABASE).start()
            assert postgres.tls is not None
            # The files services log in as in the cloud: the task role's credentials (from a local
            # credentials endpoint) sign an IAM token per connection, which the RDS IAM stand-in checks.
            self.credentials = CredentialsEndpoint(free_port()).start()
            self.rds_iam = RdsIamProxy(
                port=free_port(),
                socket_dir=postgres.socket_dir,
                upstream_port=postgres.port,
                certfile=postgres.tls.cert_file,
                keyfile=postgres.tls.key_file,
                region=self.config.region,
                secrets=self.credentials.valid,
            ).start()
            self.redis = RedisServer(password=secrets.token_urlsafe(24)).start()
            self.issuer = Issuer()
            issuer_file = tmp / "issuer.json"
            self.issuer.save(issuer_file)
            self.jwks = JwksServer(self.issuer, port=self.port("jwks")).start()
            aws = self.aws_resources = self._create_aws_resources()
            envs = self.service_environments(aws)
            self._migrate_files_database()
            self._spawn("upload", ["-m", "files_service"], envs["upload"])
            self._spawn("download", ["-m", "files_service"], envs["download"])
            # The adapter plays API Gateway's JWT authorizer and CORS handling, and the poller the
            # event source mapping; their own settings are arguments, so the environment is exactly
            # the Lambda's.
            self._spawn(
                "mail-api",
                [
                    "-m",
                    "devstack.apigw",
                    "--port",
                    str(self.port("mail-api")),
                    "--issuer",
                    self.issuer.issuer,
                    "--jwks-url",
                    self.jwks.url,
                    "--audience",
                    self.issuer.audience,
                    "--cors",
                    cors_argument(self.mail_api_cors),
                ],
                # One local process plays both functions behind the HTTP API: the API and the webhook.
                {**envs["mail-api"], **envs["mail-webhook"]},
            )
            self._spawn(
                "mail-poller",
                [
                    "-m",
                    "devstack.sqs_poller",
                    "--queue-url",
                    aws["mail"].queue_url,
                    "--batch-size",
                    "10",
                    "--function-timeout",
                    "30",
                ],
                envs["mailer"],
            )
            self._spawn(
                "mail-events",
                [
                    "-m",
                    "devstack.sqs_poller",
                    "--handler",
                    "mailer.ses_events.handler",
                    "--queue-url",
                    aws["mail"].ses_events_queue_url,
                    "--batch-size",
                    "10",
                    "--function-timeout",
                    "30",
                ],
                envs["mail-events"],
            )
            self._spawn("chat-a", ["-m", "chat_service"], envs["chat-a"])
            self._spawn("chat-b", ["-m", "chat_service"], envs["chat-b"])
            # One files URL for the frontend, routed by the ALB's path rules.
            self._spawn(
                "files",
                [
                    "-m",
                    "devstack.alb",
                    "--port",
                    str(self.port("files")),
                    "--target",
                    f"upload={self.url('upload')}",
                    "--target",
                    f"download={self.url('download')}",
                ],
                {},
            )
            self._wait_healthy(deadline=started + timeout)
        except BaseException:
            self.stop()
            raise
        self.state = State(
            urls={
                "files": self.url("files") + FILES.api_prefix,
                "files-upload": self.url("upload") + FILES.api_prefix,
                "files-download": self.url("download") + FILES.api_prefix,
                "mail-api": self.url("mail-api"),
                "chat-a": f"ws://{LOCALHOST}:{self.port('chat-a')}{CHAT.ws_path}",
                "chat-b": f"ws://{LOCALHOST}:{self.port('chat-b')}{CHAT.ws_path}",
                "jwks": self.jwks.url,
                "aws": self.moto.endpoint,
                "ses": self.ses.endpoint,
            },
            aws_endpoint=self.moto.endpoint,
            bucket=aws["bucket"],
            mail_table=aws["mail"].table_name,
            mail_queue_url=aws["mail"].queue_url,
            mail_dlq_url=aws["mail"].dlq_url,
            chat_table=aws["chat_table"],
            issuer_file=str(issuer_file),
            webhook_secret_file=str(
                self._write_private(issuer_file.parent / "clerk-webhook-secret", aws["mail"].webhook_secret)
            ),
        )
        if self.state_file is not None:
            self.state.save(self.state_file)
        return self.state

    @staticmethod
    def _write_private(path: Path, text: str) -> Path:
        path.touch(mode=0o600)
        path.write_text(text)
        return path

    # --- cloud resources in the local AWS API ------------------------------------------------------

    def _create_aws_resources(self) -> dict[str, Any]:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=self.config.region
        )
        moto, _, _, _ = self._running()
        cfg = self.config
        endpoint = moto.endpoint
        old = os.environ.get("AWS_ENDPOINT_URL")
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        try:
            mail: MailResources = create_mail_resources(
                f"{cfg.name_prefix}-mail",
                max_receive_count=cfg.mail.max_receive_count,
                visibility_timeout=6
                * cfg.mail.mailer_timeout_seconds,  # as components/mailing/mailing.py sets it
                sender_address=cfg.mail.sender_address,
                session=session,
            )
            assert self.ses is not None
            publish_ses_events(mail, session.client("sesv2", endpoint_url=self.ses.endpoint))
        finally:
            if old is None:
                os.environ.pop("AWS_ENDPOINT_URL", None)
            else:
                os.environ["AWS_ENDPOINT_URL"] = old
        s3 = session.client("s3", endpoint_url=endpoint)
        # The cloud bucket gets a generated suffix; the local one a fixed one.
        bucket = f"{cfg.name_prefix}-files-local"
        s3.create_bucket(Bucket=bucket)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedMethods": ["GET", "HEAD", "POST"],
                        "AllowedOrigins": list(cfg.frontend.origins),
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                        "MaxAgeSeconds": 3000,
                    }
                ]
            },
        )
        dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        chat_table = chat_table_name(cfg.name_prefix)
        dynamodb.create_table(**CHAT.create_table_kwargs(chat_table))
        return {"mail": mail, "bucket": bucket, "chat_table": chat_table}

    # --- services ----------------------------------------------------------------------------------

    def _migrate_files_database(self) -> None:
        """The migration step, as a release runs it before the services: the real entry point with
        the master credential, the server verified against the local CA."""
        postgres = self._running()[1]
        assert postgres.tls is not None and self.log_dir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_"))}
        env.update(
            {
                "DATABASE_HOST": LOCALHOST,
                "DATABASE_PORT": str(postgres.port),
                "DATABASE_NAME": FILES_DATABASE,
                "DATABASE_USER": postgres.user,
                "DATABASE_PASSWORD": postgres.password,
                "DATABASE_SSLMODE": "verify-full",
                "DATABASE_SSLROOTCERT": str(postgres.tls.ca_file),
                "PYTHONPATH": pythonpath("files"),
            }
        )
        done = subprocess.run(
            [sys.executable, "-m", MIGRATE_MODULE],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        (self.log_dir / "files-migrate.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise BackendError(f"the files migration step failed:\n{done.stderr.strip()}")

    def _running(self) -> tuple[MotoServer, PostgresServer, RedisServer, JwksServer]:
        if self.moto is None or self.postgres is None or self.redis is None or self.jwks is None:
            raise BackendError("the backend's servers are not running")
        return self.moto, self.postgres, self.redis, self.jwks

    def service_environments(self, aws: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Each service's environment: the variables its cloud deployment sets, pointed at local servers."""
        mail: MailResources = aws["mail"]
        _, postgres, redis, jwks = self._running()
        assert self.rds_iam is not None and self.credentials is not None and postgres.tls is not None
        auth = {
            "AUTH_ISSUER": self.issuer.issuer,
            "AUTH_JWKS_URL": jwks.url,
            "AUTH_AUDIENCE": self.issuer.audience,
        }
        cfg = self.config
        cors = {"CORS_ORIGINS": ",".join(cfg.frontend.origins)}
        files = {
            **auth,
            **cors,
            "FILES_BUCKET": aws["bucket"],
            "AWS_REGION": cfg.region,
            # As the task definition sets them (components/files/files.py), pointed at the local stand-ins.
            "DATABASE_AUTH": "iam",
            "DATABASE_HOST": LOCALHOST,
            "DATABASE_PORT": str(self.rds_iam.port),
            "DATABASE_NAME": FILES_DATABASE,
            "DATABASE_USER": APP_ROLE,
            "DATABASE_SSLMODE": "verify-full",
            "DATABASE_SSLROOTCERT": str(postgres.tls.ca_file),
            **self.credentials.env(),
            "MAX_UPLOAD_BYTES": str(cfg.files.max_upload_bytes),
            "ALLOWED_CONTENT_TYPES": ",".join(cfg.files.allowed_content_types),
            "PRESIGN_TTL_SECONDS": str(cfg.files.presign_ttl_seconds),
            # As components/files/files.py sets them.
            "MAX_SHARE_DAYS": str(cfg.files.max_share_days),
            "MAX_PENDING_UPLOADS_PER_USER": str(cfg.files.max_pending_uploads_per_user),
            "MAX_PROJECT_BYTES": str(cfg.files.max_project_bytes),
            "LOG_LEVEL": "INFO",
        }

        def chat(instance: str) -> dict[str, str]:
            # As the task definition sets it (components/chat.py), pointed at the local servers.
            environment = chat_environment(
                port=self.port(instance),
                table=str(aws["chat_table"]),
                region=cfg.region,
                redis_host=LOCALHOST,
                redis_port=redis.port,
                redis_tls=False,
                auth_issuer=auth["AUTH_ISSUER"],
                auth_jwks_url=auth["AUTH_JWKS_URL"],
                auth_audience=auth["AUTH_AUDIENCE"],
                cors_origins=cfg.frontend.origins,
            )
            return {**environment, "REDIS_AUTH_TOKEN": redis.password or ""}

        return {
            "upload": {**files, "FILES_ROLE": "upload", "PORT": str(self.port("upload"))},
            "download": {**files, "FILES_ROLE": "download", "PORT": str(self.port("download"))},
            "mail-api": {
                **mail.api_env(),
                "QUOTA_PER_HOUR": str(cfg.mail.quota_per_hour),
                "QUOTA_PER_DAY": str(cfg.mail.quota_per_day),
                "MAX_RECIPIENTS": str(MAIL_MAX_RECIPIENTS),
                "LOG_LEVEL": "INFO",
            },
            "mailer": {**mail.worker_env(), "LOG_LEVEL": "INFO"},
            "mail-events": {**mail.events_env(), "LOG_LEVEL": "INFO"},
            "mail-webhook": {**mail.webhook_env(), "LOG_LEVEL": "INFO"},
            "chat-a": chat("chat-a"),
            "chat-b": chat("chat-b"),
        }

    def _spawn(self, name: str, args: list[str], service_env: dict[str, str]) -> None:
        assert self.log_dir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
        env.update(self._running()[0].env())
        if self.ses is not None:
            # SES through the stand-in (botocore's service-specific endpoint), the rest through moto.
            env["AWS_ENDPOINT_URL_SESV2"] = self.ses.endpoint
        env.update(service_env)
        if "AWS_CONTAINER_CREDENTIALS_FULL_URI" in service_env:
            # Like a task with a role: credentials from the endpoint only (botocore would prefer keys
            # in the environment).
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                env.pop(key, None)
        env["PYTHONPATH"] = development_pythonpath()
        env["PYTHONUNBUFFERED"] = "1"
        # The services bind 0.0.0.0 by default, right in a task (awsvpc gives it its own interface,
        # reachable only through its security group) and wrong here, where that would open them to
        # the whole network: locally every process binds the loopback interface only.
        env["HOST"] = LOCALHOST
        self.spawned[name] = SpawnSpec([sys.executable, *args], env, self.log_dir / f"{name}.log")
        self._popen(name)

    def _popen(self, name: str) -> None:
        spec = self.spawned[name]
        # Appended to, so a restarted service's log continues after the crash that ended the last one.
        with spec.log_path.open("ab") as log:
            self.processes[name] = subprocess.Popen(
                spec.argv,
                env=spec.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )

    def respawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start service `name` again, with the command line, environment and log it first had."""
        old = self.processes.get(name)
        if old is not None:
            if old.poll() is None:
                raise BackendError(f"{name} is still running (pid {old.pid})")
            # Whatever the dead leader left in its session (children) would hold its port.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(old.pid, signal.SIGKILL)
        self._popen(name)
        return self.processes[name]

    def _exit_code(self, name: str) -> int | None:
        # Looked up by name each time: a respawn replaces the process.
        return self.processes[name].poll()

    def health_checks(self) -> dict[str, str]:
        """Each service's readiness URL (the mail poller has none: it serves nothing)."""
        return {
            "upload": f"{self.url('upload')}{FILES.readiness_path}",
            "download": f"{self.url('download')}{FILES.readiness_path}",
            "chat-a": f"{self.url('chat-a')}{CHAT.readiness_path}",
            "chat-b": f"{self.url('chat-b')}{CHAT.readiness_path}",
            "mail-api": f"{self.url('mail-api')}/mail/messages",
            # The router has no health path of its own: the spec, routed to Download, proves both work.
            "files": f"{self.url('files')}{FILES.openapi_path}",
        }

    def _wait_healthy(self, deadline: float) -> None:
        pending = self.health_checks()
        while pending:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise BackendError(f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}")
            for name, url in list(pending.items()):
                if _answers(url):
                    del pending[name]
            if time.monotonic() > deadline:
                raise BackendError(
                    f"not healthy in time: {', '.join(pending)}\n"
                    + "\n".join(self.log_tail(n) for n in pending)
                )
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        assert self.log_dir is not None
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return f"--- {name} ---\n" + "\n".join(text)

    def supervisor(self, say: Callable[[str], None]) -> Supervisor:
        """`make run`'s supervisor of this running backend: it restarts a service that exits and
        reports (and where safe restarts) a server that dies; `say` prints its lines."""
        moto, postgres, redis, jwks = self._running()
        assert self.credentials is not None and self.rds_iam is not None
        checks = self.health_checks()
        services = [
            Service(
                name=name,
                exit_code=functools.partial(self._exit_code, name),
                respawn=functools.partial(self.respawn, name),
                log_tail=functools.partial(self.log_tail, name, 15),
                health=functools.partial(_answers, checks[name]) if name in checks else None,
            )
            for name in self.processes
        ]
        in_process = "it runs inside `make run` itself; stop with Ctrl-C and start again"

        def thread_pid(alive: Callable[[], bool]) -> Callable[[], int | None]:
            return lambda: os.getpid() if alive() else None

        dependencies = [
            Dependency(
                "the local AWS API",
                "S3, DynamoDB, SQS and Secrets Manager calls fail: files, mail and chat history",
                lambda: moto.pid,
                # Its resources live only in its memory: a new one would answer with none of them.
                not_restarted="a new one would have none of the resources; stop with Ctrl-C and start again",
            ),
            Dependency(
                "the SES stand-in",
                "the mailer cannot send e-mail (every send is retried, then dead-lettered) and no"
                " sending events reach the SES events handler",
                thread_pid(lambda: self.ses is not None and self.ses.alive),
                # Like the AWS API it fronts: the configuration sets' event destinations and the
                # suppression list live only in its memory; a new one would publish no events.
                not_restarted="a new one would have no event destinations or suppression list; "
                "stop with Ctrl-C and start again",
            ),
            Dependency(
                "PostgreSQL",
                "upload and download cannot reach the files database",
                lambda: postgres.pid,
                # Same port, same data directory, same TLS files: the database survives the restart.
                restart=postgres.restart,
            ),
            Dependency(
                "Redis",
                "chat cannot deliver across instances",
                lambda: redis.pid,
                # Same port and password; it holds only pub/sub and presence, lost with the crash anyway.
                restart=redis.restart,
            ),
            Dependency(
                "the identity stand-in's JWKS server",
                "services cannot fetch the signing keys to verify tokens",
                thread_pid(lambda: jwks.alive),
                not_restarted=in_process,
            ),
            Dependency(
                "the RDS IAM stand-in",
                "upload and download cannot log in to the files database",
                thread_pid(lambda: self.rds_iam is not None and self.rds_iam.alive),
                not_restarted=in_process,
            ),
            Dependency(
                "the task role's credentials endpoint",
                "upload and download get no AWS credentials once theirs expire",
                thread_pid(lambda: self.credentials is not None and self.credentials.alive),
                not_restarted=in_process,
            ),
        ]
        return Supervisor(services, dependencies, say)

    def stop(self) -> None:
        """Stop every process and server and remove the temporary data; safe to call twice."""
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
        self.spawned.clear()
        if self.jwks is not None:
            self.jwks.stop()
            self.jwks = None
        if self.ses is not None:
            self.ses.__exit__(None, None, None)
            self.ses = None
        if self.rds_iam is not None:
            self.rds_iam.stop()
            self.rds_iam = None
        if self.credentials is not None:
            self.credentials.stop()
            self.credentials = None
        for server in (self.redis, self.postgres, self.moto):
            if server is not None:
                with contextlib.suppress(OSError, ServerError):
                    server.cleanup()
        self.redis = self.postgres = self.moto = None
        if self.state_file is not None and self.state_file.exists():
            self.state_file.unlink()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    """Any HTTP answer (even 401/404) means the server is up; the files/chat checks expect 200.

    A server that answers with something that is not HTTP (a garbled status line, a header line
    too long, a connection closed mid-answer) is unhealthy, never an exception: the supervisor's
    tick() calls this, and an exception escaping it would end `make run` and every process with it.
    """
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError as err:
        return "/mail/" in url and err.code in (401, 404)
    except (OSError, http.client.HTTPException):
        return False
