"""The composition root: one function that builds a whole stack from its config, so tests can run it
once per stack in one process."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumiverse_vercel as vercel

from components.aws.fargate_types import Attachment
from components.aws.kms import LogKey
from components.chat import Chat, ChatArgs
from components.config.model import StackConfig
from components.dns import ApiCertificate, DnsRecords, DnsRecordsArgs
from components.facts import CHAT, FILES
from components.files.files import Files, FilesArgs
from components.frontend import Frontend, FrontendArgs
from components.mailing.mailing import Mailing, MailingArgs
from components.mailing.sdk_layer import SdkLayer
from components.network import Network, NetworkArgs
from components.operations import Operations, OperationsArgs
from components.platform.platform import Platform, PlatformArgs
from components.platform.waf import Waf, WafArgs


def _log_group(config: aws.lambda_.outputs.FunctionLoggingConfig | None) -> str:
    if config is None or not config.log_group:
        raise ValueError("every function names its log group (components/aws/lambda_function.py)")
    return config.log_group


@dataclass(frozen=True)
class Stack:
    """What `build` made, for tests and for `__main__` to export."""

    config: StackConfig
    network: Network
    platform: Platform
    waf: Waf | None
    sdk_layer: SdkLayer
    mailing: Mailing
    files: Files
    chat: Chat
    frontend: Frontend
    certificate: ApiCertificate | None
    dns: DnsRecords
    operations: Operations
    outputs: dict[str, pulumi.Input[object]]


def build(config: StackConfig) -> Stack:
    # One explicit provider carries the region and the default tags, so every AWS resource is tagged.
    provider = aws.Provider(
        "aws", region=config.region, default_tags=aws.ProviderDefaultTagsArgs(tags=config.tags)
    )
    with_aws = pulumi.ResourceOptions(providers={"aws": provider})
    # Before every log group: each names it when created.
    log_key = (
        LogKey("logs", config.name_prefix, config.data_protection, opts=with_aws)
        if config.logs_kms_encryption
        else None
    )
    log_kms_key_arn = log_key.arn if log_key else None
    zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(provider=provider)).names

    network = Network(
        "network",
        NetworkArgs(
            name_prefix=config.name_prefix,
            network=config.network,
            availability_zones=tuple(zones),
            log_retention_days=config.log_retention_days,
            log_kms_key_arn=log_kms_key_arn,
        ),
        opts=with_aws,
    )
    # With a hosted zone the program requests the API's certificate and validates it there; the HTTPS
    # listener takes the validation's ARN, so it waits for the issued certificate.
    certificate = (
        ApiCertificate("api-certificate", config.domain, config.dns.zone_id, opts=with_aws)
        if config.dns.managed
        else None
    )
    platform = Platform(
        "platform",
        PlatformArgs(
            name_prefix=config.name_prefix,
            vpc_id=network.vpc_id,
            vpc_cidr=config.network.vpc_cidr,
            public_subnet_ids=network.public_subnet_ids,
            certificate_arn=certificate.arn if certificate else (config.certificate_arn or None),
            domain=config.domain,
            container_insights=config.container_insights,
            deletion_protection=config.alb_deletion_protection,
            access_logs=config.alb_access_logs,
            log_retention_days=config.log_retention_days,
            alarm_email=config.alarm_email,
            versioned_logs=config.data_protection,
        ),
        opts=with_aws,
    )

    # Dev may run without it: a web ACL and each of its rules are billed by the month whatever the
    # traffic (AWS WAF pricing), and dev serves no one but the team.
    waf = (
        Waf(
            "waf",
            WafArgs(
                name_prefix=config.name_prefix,
                load_balancer_arn=platform.alb.arn,
                rate_limit=config.waf_rate_limit,
                log_retention_days=config.log_retention_days,
                log_kms_key_arn=log_kms_key_arn,
                alarm_topic_arn=platform.alarm_topic_arn,
            ),
            opts=with_aws,
        )
        if config.waf
        else None
    )

    # One SDK layer for every Python Lambda of the stack (the mailer's and the task runner's).
    layer = SdkLayer("sdk", config.name_prefix, opts=with_aws)
    mailing = Mailing(
        "mailing",
        MailingArgs(
            name_prefix=config.name_prefix,
            mail=config.mail,
            auth=config.auth,
            cors_origins=config.frontend.origins,
            data_protection=config.data_protection,
            kms_encryption=config.data_kms_encryption,
            log_retention_days=config.log_retention_days,
            log_kms_key_arn=log_kms_key_arn,
            alarm_topic_arn=platform.alarm_topic_arn,
            sdk_layer_arn=layer.arn,
        ),
        opts=with_aws,
    )

    # Without NAT (dev) tasks sit in public subnets with public IPs for egress; the security groups
    # still admit traffic from the load balancer only.
    private = config.network.nat_strategy != "none"
    attachment = Attachment(
        cluster_arn=platform.cluster_arn,
        cluster_name=platform.cluster_name,
        listener_arn=platform.listener_arn,
        alb_arn_suffix=platform.alb_arn_suffix,
        alb_security_group_id=platform.alb_security_group_id,
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids if private else network.public_subnet_ids,
        assign_public_ip=not private,
        egress=network.egress["private" if private else "public"],
        alarm_topic_arn=platform.alarm_topic_arn,
        log_retention_days=config.log_retention_days,
        log_kms_key_arn=log_kms_key_arn,
        region=config.region,
        log_group_prefix=f"/{config.project}",
        container_insights=config.container_insights,
    )
    files = Files(
        "files",
        FilesArgs(
            name_prefix=config.name_prefix,
            files=config.files,
            database=config.database,
            auth=config.auth,
            upload=config.upload,
            download=config.download,
            cors_origins=config.frontend.origins,
            isolated_subnet_ids=network.isolated_subnet_ids,
            attachment=attachment,
            kms_encryption=config.data_kms_encryption,
            versioning=config.data_protection,
            sdk_layer_arn=layer.arn,
        ),
        opts=with_aws,
    )

    chat = Chat(
        "chat",
        ChatArgs(
            name_prefix=config.name_prefix,
            cache=config.cache,
            auth=config.auth,
            scaling=config.chat,
            cors_origins=config.frontend.origins,
            isolated_subnet_ids=network.isolated_subnet_ids,
            attachment=attachment,
            data_protection=config.data_protection,
            kms_encryption=config.data_kms_encryption,
        ),
        opts=with_aws,
    )

    functions = [
        mailing.mailer,
        mailing.api_function,
        mailing.webhook_function,
        mailing.ses_events.function,
        files.migration.runner,
    ]
    operations = Operations(
        "operations",
        OperationsArgs(
            name_prefix=config.name_prefix,
            log_group_names=[
                *(service.log_group_name for service in files.services.values()),
                chat.service.log_group_name,
                files.migration.log_group_name,
                # Each function logs where its logging config says (components/aws/lambda_function.py).
                *(fn.logging_config.apply(_log_group) for fn in functions),
            ],
            region=config.region,
            panels=[
                platform.panel,
                *([waf.panel] if waf else []),
                *(service.panel for service in files.services.values()),
                chat.service.panel,
                files.panel,
                files.database.postgres.panel,
                chat.panel,
                mailing.panel,
            ],
        ),
        opts=with_aws,
    )

    files_url = pulumi.Output.concat(platform.base_url, FILES.api_prefix)
    chat_url = pulumi.Output.concat(platform.ws_base_url, CHAT.ws_path)
    vercel_provider = vercel.Provider(
        "vercel",
        api_token=pulumi.Config("vercel").get_secret("apiToken"),
        team=config.frontend.vercel_team_id or None,
    )
    frontend = Frontend(
        "frontend",
        FrontendArgs(
            frontend=config.frontend,
            public_variables={
                "VITE_API_BASE_URL": platform.base_url,
                "VITE_FILES_SERVICE_URL": files_url,
                "VITE_CHAT_WS_URL": chat_url,
                "VITE_MAIL_API_URL": mailing.api_url,
                "VITE_CLERK_PUBLISHABLE_KEY": config.auth.clerk_publishable_key,
                "VITE_MOTION_STACK": config.stack,
            },
        ),
        opts=pulumi.ResourceOptions(providers={"vercel": vercel_provider}),
    )

    dns = DnsRecords(
        "dns",
        DnsRecordsArgs(
            dns=config.dns,
            region=config.region,
            domain=config.domain,
            alb_dns_name=platform.alb.dns_name,
            alb_zone_id=platform.alb.zone_id,
            sender_domain=config.mail.sender_domain,
            email_identity=mailing.identity.email_identity,
            dkim_records=mailing.dkim_records,
            frontend_ipv4s=frontend.recommended_ipv4s,
            frontend_records=frontend.dns_records,
        ),
        opts=with_aws,
    )

    outputs: dict[str, pulumi.Input[object]] = {
        # Every DNS record to publish by hand, in one list (`make preflight` checks them); empty with a
        # hosted zone, where the program writes them.
        "dnsRecords": dns.to_publish,
        "region": config.region,
        "vpcId": network.vpc_id,
        "baseUrl": platform.base_url,
        "albDnsName": platform.alb.dns_name,
        "clusterName": platform.cluster_name,
        "dashboardName": operations.dashboard.dashboard_name,
        "mailApiUrl": mailing.api_url,
        "mailQueueUrl": mailing.queue.url,
        "mailDeadLetterQueueUrl": mailing.dead_letters.url,
        "sesEventsQueueUrl": mailing.ses_events.queue.url,
        "mailMessagesTable": mailing.table.name,
        # Where the Clerk webhook endpoint's signing secret goes after the first `pulumi up`.
        "mailWebhookSecretArn": mailing.webhook_secret.arn,
        "sesDkimRecords": mailing.dkim_records,
        "filesServiceUrl": files_url,
        "filesBucket": files.bucket_name,
        "filesDatabaseAddress": files.database.address,
        "chatWebSocketUrl": chat_url,
        "chatMessagesTable": chat.table.name,
        "frontendProjectId": frontend.project_id,
        "frontendProjectName": frontend.project.name,
        "frontendDomains": pulumi.Output.all(*[domain.domain for domain in frontend.domains]),
    }
    if config.dns.managed:
        outputs["hostedZoneId"] = config.dns.zone_id
    for key, value in outputs.items():
        pulumi.export(key, value)
    return Stack(
        config=config,
        network=network,
        platform=platform,
        waf=waf,
        sdk_layer=layer,
        mailing=mailing,
        files=files,
        chat=chat,
        frontend=frontend,
        certificate=certificate,
        dns=dns,
        operations=operations,
        outputs=outputs,
    )
