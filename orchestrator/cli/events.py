"""`saga events sinks|replay|dead|requeue`: operating the event sinks from a shell
(docs/events.md, "Operating the sinks"), through the SagaEvents service."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2
from rich.table import Table

from orchestrator.cli import rendering as view
from orchestrator.cli.options import EXIT_OK, json_option, point_in_time, positive_int
from orchestrator.cli.output import note, show, write_line
from orchestrator.client import SagaClient
from saga.v1 import events_admin_pb2 as pb


def events_parser(commands: Any, client: list[argparse.ArgumentParser]) -> None:
    """`saga events` and its four subcommands."""
    events = commands.add_parser(
        "events", help="operate the event sinks: backlog, replay, dead letters"
    )
    actions = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    sinks = actions.add_parser(
        "sinks",
        parents=client,
        help="each sink's backlog, oldest pending event, dead letters and partition owners",
    )
    json_option(sinks, "the sinks")
    replay = actions.add_parser(
        "replay",
        parents=client,
        help="queue events again from the transition log (same ids; consumers dedupe)",
        description="Rebuild events from the transition log and queue them in the outbox, "
        "for one saga (--saga) or for every saga with transitions since a time (--since). "
        "Each call reads at most --limit transitions; the command calls again until done.",
    )
    chosen = replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--saga", dest="saga_id", default="", help="one saga's events")
    chosen.add_argument(
        "--since", type=point_in_time, help="ISO 8601 (UTC unless it says) or a duration ago"
    )
    replay.add_argument("--sink", default="", help="only this sink (default: every one)")
    replay.add_argument(
        "--limit", type=positive_int, default=1000, help="transitions per call (default 1000)"
    )
    json_option(replay, "the totals")
    dead = actions.add_parser("dead", parents=client, help="list dead-lettered events")
    dead.add_argument("--sink", default="", help="only this sink's")
    dead.add_argument("--limit", type=positive_int, default=100, help="per page (default 100)")
    dead.add_argument("--page-token", default="", help="continue where a listing stopped")
    dead.add_argument("--all", action="store_true", help="follow every page to the end")
    json_option(dead, "the dead events (and next_page_token)")
    requeue = actions.add_parser(
        "requeue", parents=client, help="move dead-lettered events back into the outbox"
    )
    requeue.add_argument("--sink", required=True, help="the sink whose dead letters to requeue")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=positive_int, default=[], help="dead event ids")
    which.add_argument("--all", action="store_true", help="every dead letter of the sink")
    json_option(requeue, "how many were requeued")


def _age(sink: pb.EventSink) -> str:
    if not sink.HasField("oldest_pending_time"):
        return "-"
    return f"{sink.oldest_pending_age.ToTimedelta().total_seconds():.1f}s"


def _owners(sink: pb.EventSink) -> str:
    counts: dict[str, int] = {}
    for partition in sink.partition_owners:
        owner = partition.owner or "(free)"
        counts[owner] = counts.get(owner, 0) + 1
    return ", ".join(f"{owner}: {count}" for owner, count in sorted(counts.items())) or "-"


def sinks_table(response: pb.ListEventSinksResponse) -> Table:
    table = Table("SINK", "KIND", "TARGET", "PENDING", "OLDEST", "DEAD", "PARTITION OWNERS")
    for sink in response.sinks:
        kind = pb.EventSinkKind.Name(sink.kind).removeprefix("EVENT_SINK_KIND_").lower()
        table.add_row(
            sink.name,
            kind if sink.configured else "(not configured here)",
            sink.target,
            str(sink.pending),
            _age(sink),
            str(sink.dead),
            _owners(sink),
        )
    return table


def dead_table(events: list[pb.DeadEvent]) -> Table:
    table = Table("ID", "SINK", "EVENT ID", "TYPE", "ATTEMPTS", "DEAD SINCE", "ERROR")
    for event in events:
        table.add_row(
            str(event.id),
            event.sink,
            event.event_id,
            event.event_type,
            str(event.attempts),
            event.dead_time.ToDatetime().isoformat(timespec="seconds"),
            event.error,
        )
    return table


async def events_command(args: argparse.Namespace, client: SagaClient) -> int:
    """Run one `saga events` action."""
    action = args.events_command
    if action == "sinks":
        sinks = await client.event_sinks()
        if args.json:
            write_line(view.to_json(sinks))
        elif not sinks.sinks:
            note("no event sinks: none configured, none in the database")
        else:
            show(sinks_table(sinks))
            note(f"relays running: {', '.join(sinks.relay_replicas) or 'none'}")
        return EXIT_OK
    if action == "replay":
        return await _replay(args, client)
    if action == "dead":
        return await _dead(args, client)
    requeued = await client.requeue_dead_events(args.sink, args.ids, all=args.all)
    if args.json:
        write_line(view.to_json(pb.RequeueDeadEventsResponse(requeued=requeued)))
    else:
        note(f"requeued {requeued} dead events of sink {args.sink}")
    return EXIT_OK


async def _replay(args: argparse.Namespace, client: SagaClient) -> int:
    request = pb.ReplayEventsRequest(saga_id=args.saga_id, sink=args.sink, limit=args.limit)
    if args.since is not None:
        request.since_time.CopyFrom(_timestamp(args.since))
    total = pb.ReplayEventsResponse()
    while True:
        answer = await client.replay_events(request)
        total.queued += answer.queued
        total.transitions += answer.transitions
        if not answer.next_page_token:
            break
        request.page_token = answer.next_page_token
    if args.json:
        write_line(view.to_json(total))
    else:
        note(f"queued {total.queued} events from {total.transitions} transitions")
    return EXIT_OK


async def _dead(args: argparse.Namespace, client: SagaClient) -> int:
    events: list[pb.DeadEvent] = []
    token = args.page_token
    while True:
        page = await client.dead_events(args.sink, page_size=args.limit, page_token=token)
        events.extend(page.events)
        token = page.next_page_token
        if not token or not args.all:
            break
    if args.json:
        write_line(view.to_json(pb.ListDeadEventsResponse(events=events, next_page_token=token)))
        return EXIT_OK
    if not events:
        note("no dead events")
    else:
        show(dead_table(events))
    if token:
        note(f"more follow: add --page-token {token}, or use --all")
    return EXIT_OK


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
