"""`saga retry|resolve|abort --all [filters]`: the bulk operator actions, a page per call,
following the page tokens to the end and printing a summary (or, with --dry-run, the
count and a sample of the sagas it would take, changing nothing)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import grpc

from orchestrator.cli.options import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    SAGA_STATUSES,
    CliError,
    operator_name,
    point_in_time,
)
from orchestrator.cli.output import note, write_line
from orchestrator.client import BulkFilters, SagaClient
from saga.v1 import orchestrator_pb2 as pb

DEFAULT_BULK_PAGE = 100
MAX_BULK_PAGE = 1000
SAMPLE_SHOWN = 20
"""Saga ids a dry run prints, of its first page."""
DONE = {"retry": "retried", "resolve": "resolved", "abort": "aborted"}


def bulk_page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_BULK_PAGE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_BULK_PAGE}, got {value}")
    return value


def add_bulk_options(command: argparse.ArgumentParser) -> None:
    """--all and the filters it takes (every filter narrows: AND)."""
    bulk = command.add_argument_group(
        "bulk (--all)", "act on every saga matching the filters, a page per call"
    )
    bulk.add_argument("--all", action="store_true", help="every saga matching the filters")
    bulk.add_argument("--dry-run", action="store_true", help="count and sample; change nothing")
    bulk.add_argument("--type", dest="saga_type", default="", help="only this saga type")
    bulk.add_argument("--status", type=str.lower, choices=sorted(SAGA_STATUSES))
    bulk.add_argument(
        "--needs-intervention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only sagas an operator must (or, with --no-, need not) act on",
    )
    bulk.add_argument("--failed-step", default="", help="only sagas stuck at this step")
    bulk.add_argument("--participant", default="", help="only sagas whose failed step addresses it")
    bulk.add_argument(
        "--error",
        dest="failure_reason_contains",
        default="",
        metavar="TEXT",
        help="only sagas whose failure reason contains TEXT (case-sensitive)",
    )
    bulk.add_argument("--since", type=point_in_time, help="created at or after")
    bulk.add_argument("--until", type=point_in_time, help="created before")
    bulk.add_argument("--updated-since", type=point_in_time, help="last changed at or after")
    bulk.add_argument("--updated-until", type=point_in_time, help="last changed before")
    bulk.add_argument(
        "--page-size",
        type=bulk_page_size,
        default=DEFAULT_BULK_PAGE,
        metavar="N",
        help=f"sagas per call, 1 to {MAX_BULK_PAGE} (default {DEFAULT_BULK_PAGE})",
    )
    bulk.add_argument("--page-token", default="", help="resume where a bulk run stopped")


def bulk_filters(args: argparse.Namespace) -> BulkFilters:
    """The filters the flags ask for; at least one, so `--all` alone takes nothing by
    accident."""
    filters = BulkFilters()
    for name in ("saga_type", "failed_step", "participant", "failure_reason_contains"):
        if getattr(args, name):
            filters[name] = getattr(args, name)
    if args.status:
        filters["status"] = SAGA_STATUSES[args.status]
    if args.needs_intervention is not None:
        filters["needs_intervention"] = args.needs_intervention
    for flag, name in (
        ("since", "created_after"),
        ("until", "created_before"),
        ("updated_since", "updated_after"),
        ("updated_until", "updated_before"),
    ):
        if getattr(args, flag) is not None:
            filters[name] = getattr(args, flag)  # type: ignore[literal-required]
    if not filters:
        raise CliError(
            "--all needs at least one filter (--type, --status, --needs-intervention, "
            "--failed-step, --participant, --error, --since, ...)",
            EXIT_USAGE,
        )
    return filters


async def bulk_command(args: argparse.Namespace, client: SagaClient) -> int:
    """Follow the pages to the end; print each refused saga, then a summary. Exit 1 when
    any saga was refused."""
    if args.saga_id:
        raise CliError("give a saga id or --all, not both", EXIT_USAGE)
    filters = bulk_filters(args)
    by = operator_name(args.by)
    step = getattr(args, "step", None) or ""
    token = args.page_token
    counts: Counter[str] = Counter()
    while True:
        page = await client.act_on_sagas(
            args.command,
            reason=args.reason,
            requested_by=by,
            step=step,
            dry_run=args.dry_run,
            page_size=args.page_size,
            page_token=token,
            **filters,
        )
        if args.dry_run:
            return _dry_run(args, page.matched_count, page.saga_ids, page.next_page_token)
        for result in page.results:
            _result(args, result, counts)
        token = page.next_page_token
        if not token:
            break
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "no sagas matched"
    note(f"{args.command} --all by {by}: {summary}")
    return EXIT_ERROR if set(counts) - {DONE[args.command]} else EXIT_OK


def _dry_run(args: argparse.Namespace, matched: int, ids: list[str], token: str) -> int:
    if args.json:
        write_line(json.dumps({"matched_count": matched, "saga_ids": ids}))
        return EXIT_OK
    note(f"dry run: {matched} sagas match; {args.command} --all would change them")
    for saga_id in ids[:SAMPLE_SHOWN]:
        write_line(saga_id)
    if matched > SAMPLE_SHOWN:
        note(f"(the first {min(len(ids), SAMPLE_SHOWN)} shown)")
    return EXIT_OK


def _result(args: argparse.Namespace, result: pb.BulkSagaResult, counts: Counter[str]) -> None:
    if result.WhichOneof("outcome") == "error":
        code = _code_name(result.error.code)
        counts[f"refused ({code})"] += 1
        line = {"saga_id": result.saga_id, "error": {"code": code, "message": result.error.message}}
        if not args.json:
            note(f"{result.saga_id}: {code}: {result.error.message}")
    else:
        counts[DONE[args.command]] += 1
        line = {"saga_id": result.saga_id, "status": pb.SagaStatus.Name(result.status)}
    if args.json:
        write_line(json.dumps(line))


def _code_name(code: int) -> str:
    names: dict[int, str] = {status.value[0]: status.name for status in grpc.StatusCode}
    return names.get(code, str(code))
