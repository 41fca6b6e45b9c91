"""`saga events sinks|replay|dead|requeue`: operating the event sinks from a shell
(docs/events.md, "Operating the sinks"), through the SagaEvents service; and `saga
events anomalies`: tracked sagas' events no saga could record (docs/choreography.md),
through SagaEventIngest."""

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
from saga.v1 import ingest_pb2 as ingest_pb


def events_parser(commands: Any, client: list[argparse.ArgumentParser]) -> None:
    """`saga events` and its five subcommands."""
    events = commands.add_parser(
        "events",
        help="operate the event sinks (backlog, replay, dead letters); tracked events' anomalies",
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
    anomalies = actions.add_parser(
        "anomalies",
        parents=client,
        help="tracked sagas' events no saga could record (no instance started in time)",
        description="List the events of tracked saga types that waited for their instance "
        "to start and gave up (saga serve --tracked-wait-for-start), newest first. "
        "Anomalies of a saga that exists are rows of its history instead (EVENT_ANOMALY).",
    )
    anomalies.add_argument("--saga-type", default="", help="only this tracked saga type's")
    anomalies.add_argument("--correlation", default="", help="only this correlation value's")
    anomalies.add_argument("--source", default="", help="only events from this source")
    anomalies.add_argument("--type", dest="event_type", default="", help="only this event type")
    anomalies.add_argument("--limit", type=positive_int, default=100, help="per page (default 100)")
    anomalies.add_argument("--page-token", default="", help="continue where a listing stopped")
    anomalies.add_argument("--all", action="store_true", help="follow every page to the end")
    json_option(anomalies, "the anomalies (and next_page_token)")


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
    if action == "anomalies":
        return await _anomalies(args, client)
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


def anomalies_table(anomalies: list[ingest_pb.EventAnomaly]) -> Table:
    table = Table("TIME", "SAGA TYPE", "CORRELATION", "EVENT TYPE", "SOURCE", "EVENT ID", "WHY")
    for anomaly in anomalies:
        table.add_row(
            anomaly.create_time.ToDatetime().isoformat(timespec="seconds"),
            anomaly.saga_type,
            anomaly.correlation,
            anomaly.event_type,
            anomaly.source,
            anomaly.event_id,
            anomaly.reason,
        )
    return table


async def _anomalies(args: argparse.Namespace, client: SagaClient) -> int:
    request = ingest_pb.ListEventAnomaliesRequest(
        page_size=args.limit,
        page_token=args.page_token,
        saga_type=args.saga_type,
        correlation=args.correlation,
        source=args.source,
        event_type=args.event_type,
    )
    found: list[ingest_pb.EventAnomaly] = []
    while True:
        page = await client.event_anomalies(request)
        found.extend(page.anomalies)
        request.page_token = page.next_page_token
        if not request.page_token or not args.all:
            break
    token = request.page_token
    if args.json:
        answer = ingest_pb.ListEventAnomaliesResponse(anomalies=found, next_page_token=token)
        write_line(view.to_json(answer))
        return EXIT_OK
    if not found:
        note("no event anomalies")
    else:
        show(anomalies_table(found))
    if token:
        note(f"more follow: add --page-token {token}, or use --all")
    return EXIT_OK


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
