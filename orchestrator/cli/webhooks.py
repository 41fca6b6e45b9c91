"""`saga webhooks ...` (operators' webhook endpoints and deliveries, through the
SagaWebhooks service) and the webhook flags of `saga serve` (docs/events.md, Webhooks)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from orchestrator.cli.options import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    env_or,
    json_option,
    positive_float,
    read_token_file,
)
from orchestrator.cli.output import note, write_line
from orchestrator.cli.rendering.formats import to_json
from orchestrator.client import ClientError
from orchestrator.core.errors import ConfigurationError
from orchestrator.security.tls import client_tls
from saga.v1 import webhooks_pb2 as pb

if TYPE_CHECKING:
    from orchestrator.api.webhooks_wiring import WebhooksConfig
    from orchestrator.client.webhooks import WebhooksClient

DELIVERY_STATUSES = {
    "pending": pb.WEBHOOK_DELIVERY_STATUS_PENDING,
    "delivered": pb.WEBHOOK_DELIVERY_STATUS_DELIVERED,
    "failed": pb.WEBHOOK_DELIVERY_STATUS_FAILED,
    "dead": pb.WEBHOOK_DELIVERY_STATUS_DEAD,
}


def _truthy(name: str) -> bool:
    return (env_or(name, "") or "").lower() in ("1", "true", "yes")


def _listed(name: str) -> list[str]:
    return [item for item in (env_or(name, "") or "").split(",") if item]


def _delays(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of seconds: {text!r}"
        ) from None
    if not delays or any(delay < 0 for delay in delays):
        raise argparse.ArgumentTypeError("give one or more delays in seconds, none negative")
    return delays


def webhook_serve_options(parser: argparse.ArgumentParser) -> None:
    """`saga serve`'s webhook flags, each also from the env."""
    group = parser.add_argument_group("webhooks", "deliver saga events to HTTP endpoints")
    group.add_argument(
        "--webhooks",
        action="store_true",
        default=_truthy("SAGA_WEBHOOKS"),
        help="run the webhooks sink: deliver events to the endpoints operators register "
        "(`saga webhooks create`) (env SAGA_WEBHOOKS)",
    )
    group.add_argument(
        "--webhooks-events",
        choices=("lifecycle", "all"),
        default=env_or("SAGA_WEBHOOKS_EVENTS", "lifecycle"),
        help="the sagas' milestones only, or every transition (env SAGA_WEBHOOKS_EVENTS; "
        "default lifecycle)",
    )
    group.add_argument(
        "--webhooks-allow-private",
        action="store_true",
        default=_truthy("SAGA_WEBHOOKS_ALLOW_PRIVATE"),
        help="allow targets on private, loopback and link-local addresses (a local test; "
        "env SAGA_WEBHOOKS_ALLOW_PRIVATE; default refuse them)",
    )
    group.add_argument(
        "--webhooks-timeout",
        type=positive_float,
        default=env_or("SAGA_WEBHOOKS_TIMEOUT", "10"),
        metavar="SECONDS",
        help="bound on one delivery attempt; a slower receiver is retried "
        "(env SAGA_WEBHOOKS_TIMEOUT; default 10)",
    )
    group.add_argument(
        "--webhooks-retry-delays",
        type=_delays,
        default=None,
        metavar="S,S,...",
        help="seconds before each attempt, the first usually 0; after the last the delivery "
        "is dead (env SAGA_WEBHOOKS_RETRY_DELAYS; default 12 attempts over about 3 days)",
    )
    group.add_argument(
        "--completion-webhook-allow",
        action="append",
        default=_listed("SAGA_COMPLETION_WEBHOOK_ALLOW"),
        metavar="PREFIX",
        help="StartSaga may name a completion webhook URL starting with PREFIX; repeatable "
        "(env SAGA_COMPLETION_WEBHOOK_ALLOW, comma-separated; default none allowed)",
    )
    group.add_argument(
        "--completion-webhook-secret",
        default=env_or("SAGA_COMPLETION_WEBHOOK_SECRET"),
        metavar="whsec_...",
        help="signs completion webhooks (env SAGA_COMPLETION_WEBHOOK_SECRET, preferred: a "
        "flag shows in the process list)",
    )


def webhooks_config(args: argparse.Namespace) -> WebhooksConfig:
    from orchestrator.api.webhooks_wiring import WebhooksConfig
    from orchestrator.core.events import EventSet

    delays = args.webhooks_retry_delays
    if delays is None and env_or("SAGA_WEBHOOKS_RETRY_DELAYS"):
        try:
            delays = _delays(env_or("SAGA_WEBHOOKS_RETRY_DELAYS") or "")
        except argparse.ArgumentTypeError as error:
            raise CliError(f"SAGA_WEBHOOKS_RETRY_DELAYS: {error}", EXIT_USAGE) from None
    extra = {} if delays is None else {"retry_delays": delays}
    return WebhooksConfig(
        enabled=args.webhooks,
        events=EventSet(args.webhooks_events),
        allow_private=args.webhooks_allow_private,
        timeout_seconds=args.webhooks_timeout,
        completion_allow=tuple(args.completion_webhook_allow),
        completion_secret=args.completion_webhook_secret or None,
        **extra,
    )


def add_webhooks_parser(commands: Any, client: list[argparse.ArgumentParser]) -> None:
    """`saga webhooks COMMAND`: the SagaWebhooks RPCs."""
    top = commands.add_parser(
        "webhooks",
        help="manage webhook endpoints and their deliveries (operators)",
        description="Register webhook endpoints, rotate their secrets, list deliveries and "
        "retry dead ones. The server must run with --webhooks.",
    )
    sub = top.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")

    def endpoint_fields(parser: argparse.ArgumentParser, *, creating: bool) -> None:
        parser.add_argument("--description", default=None, help="what the endpoint is for")
        parser.add_argument(
            "--event-type",
            action="append",
            default=None,
            metavar="TYPE",
            help="only this event type (e.g. saga.completed); repeatable; default every one",
        )
        parser.add_argument(
            "--saga-type",
            action="append",
            default=None,
            metavar="NAME",
            help="only this saga type; repeatable",
        )
        parser.add_argument(
            "--only-namespace",
            dest="namespaces",
            action="append",
            default=None,
            metavar="NAME",
            help="only this namespace; repeatable",
        )
        parser.add_argument(
            "--max-concurrency",
            type=int,
            default=None,
            metavar="N",
            help="deliveries in flight at once (default 4)",
        )
        if not creating:
            parser.add_argument("--url", default=None, help="the new URL")
            parser.add_argument(
                "--enable",
                dest="enabled",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="enable (or, with --no-enable, disable) the endpoint",
            )

    create = sub.add_parser(
        "create", parents=client, help="register an endpoint; prints its secret once"
    )
    create.add_argument("url")
    endpoint_fields(create, creating=True)
    json_option(create, "the endpoint and its secret")
    listing = sub.add_parser("list", parents=client, help="list the endpoints")
    json_option(listing, "the endpoints")
    get = sub.add_parser("get", parents=client, help="show one endpoint")
    get.add_argument("endpoint_id")
    json_option(get, "the endpoint")
    update = sub.add_parser("update", parents=client, help="change an endpoint")
    update.add_argument("endpoint_id")
    endpoint_fields(update, creating=False)
    json_option(update, "the endpoint")
    rotate = sub.add_parser("rotate", parents=client, help="give an endpoint a new secret")
    rotate.add_argument("endpoint_id")
    rotate.add_argument(
        "--overlap",
        type=int,
        default=0,
        metavar="SECONDS",
        help="the old secret keeps signing this long (default 86400, a day)",
    )
    json_option(rotate, "the endpoint and its new secret")
    delete = sub.add_parser("delete", parents=client, help="delete an endpoint and its deliveries")
    delete.add_argument("endpoint_id")
    deliveries = sub.add_parser("deliveries", parents=client, help="list deliveries, newest first")
    deliveries.add_argument("--endpoint", default="", help="only this endpoint's (or completion)")
    deliveries.add_argument("--status", choices=sorted(DELIVERY_STATUSES), default=None)
    deliveries.add_argument("--saga-id", default="", help="only this saga's")
    deliveries.add_argument("--limit", type=int, default=50, help="deliveries per page")
    deliveries.add_argument("--page-token", default="", help="continue where a listing stopped")
    json_option(deliveries, "the deliveries (and next_page_token)")
    retry = sub.add_parser("retry", parents=client, help="retry dead or failed deliveries")
    retry.add_argument("delivery_ids", nargs="*", type=int, metavar="ID")
    retry.add_argument("--endpoint", default="", help="every dead delivery of this endpoint")


def _endpoint_message(args: argparse.Namespace) -> tuple[pb.WebhookEndpoint, list[str]]:
    """The endpoint the flags describe, and the fields they set (for an update mask)."""
    message = pb.WebhookEndpoint(endpoint_id=getattr(args, "endpoint_id", ""))
    paths = []
    for flag, field_name in (
        ("url", "url"),
        ("description", "description"),
        ("event_type", "event_types"),
        ("saga_type", "saga_types"),
        ("namespaces", "namespaces"),
        ("max_concurrency", "max_concurrency"),
        ("enabled", "enabled"),
    ):
        value = getattr(args, flag, None)
        if value is None:
            continue
        paths.append(field_name)
        if isinstance(value, list):
            getattr(message, field_name).extend(value)
        else:
            setattr(message, field_name, value)
    return message, paths


def _show_endpoint(endpoint: pb.WebhookEndpoint) -> None:
    state = "enabled" if endpoint.enabled else f"DISABLED ({endpoint.disabled_reason})"
    filters = [
        f"{name}={','.join(values)}"
        for name, values in (
            ("events", endpoint.event_types),
            ("saga_types", endpoint.saga_types),
            ("namespaces", endpoint.namespaces),
        )
        if values
    ]
    write_line(
        f"{endpoint.endpoint_id}  {endpoint.url}  {state}  max_concurrency="
        f"{endpoint.max_concurrency}  {' '.join(filters) or 'every event'}"
        + (f"  # {endpoint.description}" if endpoint.description else "")
    )


async def _run(args: argparse.Namespace, client: WebhooksClient) -> int:
    command = args.webhooks_command
    if command == "create":
        message, _ = _endpoint_message(args)
        message.url = args.url
        created = await client.create(message)
        if args.json:
            write_line(to_json(created))
        else:
            _show_endpoint(created.endpoint)
            write_line(f"secret: {created.secret}")
            note("the secret is shown only now: store it where the receiver can read it")
    elif command in ("get", "update"):
        if command == "get":
            endpoint = await client.get(args.endpoint_id)
        else:
            message, paths = _endpoint_message(args)
            if not paths:
                raise CliError(
                    "nothing to update: give a flag such as --url or --enable", EXIT_USAGE
                )
            endpoint = await client.update(message, paths)
        write_line(to_json(endpoint)) if args.json else _show_endpoint(endpoint)
    elif command == "list":
        endpoints = await client.list()
        if args.json:
            write_line(to_json(pb.ListWebhookEndpointsResponse(endpoints=endpoints)))
        elif not endpoints:
            note("no webhook endpoints")
        for endpoint in [] if args.json else endpoints:
            _show_endpoint(endpoint)
    elif command == "rotate":
        rotated = await client.rotate(args.endpoint_id, args.overlap)
        if args.json:
            write_line(to_json(rotated))
        else:
            _show_endpoint(rotated.endpoint)
            write_line(f"secret: {rotated.secret}")
            note("the previous secret also signs until the overlap ends")
    elif command == "delete":
        await client.delete(args.endpoint_id)
        note(f"deleted {args.endpoint_id}")
    elif command == "deliveries":
        request = pb.ListWebhookDeliveriesRequest(
            endpoint_id=args.endpoint,
            saga_id=args.saga_id,
            status=DELIVERY_STATUSES[args.status] if args.status else None,
            page_size=args.limit,
            page_token=args.page_token,
        )
        page = await client.deliveries(request)
        if args.json:
            write_line(to_json(page))
            return EXIT_OK
        for item in page.deliveries:
            status = pb.WebhookDeliveryStatus.Name(item.status).removeprefix(
                "WEBHOOK_DELIVERY_STATUS_"
            )
            write_line(
                f"{item.delivery_id}  {item.endpoint_id}  {status.lower()}  {item.event_type}  "
                f"{item.event_id}  attempts={item.attempts}"
                + (f"  last: {item.last_error}" if item.last_error else "")
            )
        if page.next_page_token:
            note(f"more: --page-token {page.next_page_token}")
    elif command == "retry":
        retried = await client.retry(args.delivery_ids, args.endpoint)
        note(f"{retried} deliveries retried")
    return EXIT_OK


def webhooks_command(args: argparse.Namespace) -> int:
    from orchestrator.client.webhooks import WebhooksClient

    async def run() -> int:
        token = read_token_file(args.token_file) or env_or("SAGA_TOKEN")
        try:
            tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key)
        except ConfigurationError as error:
            raise CliError(str(error), EXIT_USAGE) from None
        async with WebhooksClient(args.address, args.timeout, tls=tls, token=token) as client:
            try:
                return await _run(args, client)
            except ClientError as error:
                raise CliError(str(error)) from None

    try:
        return asyncio.run(run())
    except CliError as error:
        print(f"saga webhooks: {error}", file=sys.stderr)
        return error.exit_code
