"""``pobox queue …``: the outbound queue for administrators (docs/relay.md).

``list`` shows what waits, ``show ID`` one message with each recipient's state and last error,
``retry [ID]`` makes a message (or all) due now, ``delete ID`` drops a message without telling
the sender, ``bounce ID`` gives up on its pending recipients and sends the sender a bounce.
These work on the store, so they work while the server runs (and on any PostgreSQL node).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from pobox.errors import NotFound
from pobox.relay.dsn import ACTION_FAILED, RecipientReport, build_report, original_headers
from pobox.relay.queue import OutboundQueue
from pobox.relay.runner import deliver_notice
from pobox.service.mail import MailService
from pobox.store.api import QUEUE_FAILED, QUEUE_PENDING, QueuedMessage, RecipientResult

#: the reason recorded and reported for ``pobox queue bounce``
BOUNCED_BY_ADMIN = "5.0.0 returned to the sender by the administrator"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = commands.add_parser("queue", help="list, retry, delete or bounce outbound mail")
    actions = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the messages waiting to be sent")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(action=cmd_list)
    show = actions.add_parser("show", help="one message: recipients, attempts, last errors")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(action=cmd_show)
    retry = actions.add_parser("retry", help="try a message (without ID: every message) now")
    retry.add_argument("id", metavar="ID", nargs="?")
    retry.set_defaults(action=cmd_retry)
    delete = actions.add_parser("delete", help="drop a message (the sender is not told)")
    delete.add_argument("id", metavar="ID")
    delete.set_defaults(action=cmd_delete)
    bounce = actions.add_parser("bounce", help="give up on a message and bounce it to its sender")
    bounce.add_argument("id", metavar="ID")
    bounce.set_defaults(action=cmd_bounce)


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _pending(item: QueuedMessage) -> list[str]:
    return [r.address for r in item.recipients if r.state == QUEUE_PENDING]


def _as_json(item: QueuedMessage) -> dict[str, object]:
    return {
        "id": item.id,
        "sender": item.sender,
        "created": _when(item.created),
        "size": item.size,
        "next_attempt": _when(item.next_attempt),
        "delay_notice_sent": item.warned,
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": _when(r.next_attempt) if r.state == QUEUE_PENDING else None,
                "last_error": r.last_error,
            }
            for r in item.recipients
        ],
    }


async def _require(service: MailService, queue_id: str) -> QueuedMessage:
    item = await service.store.queue_get(queue_id.upper())
    if item is None:
        raise NotFound(f"no message {queue_id} in the outbound queue (see pobox queue list)")
    return item


async def cmd_list(service: MailService, args: argparse.Namespace) -> int:
    import json

    items = await service.store.queue_list()
    if args.json:
        print(json.dumps([_as_json(i) for i in items], indent=2, sort_keys=True))
        return 0
    if not items:
        print("the outbound queue is empty")
        return 0
    print(f"{'ID':16}  {'QUEUED':20}  {'SIZE':>8}  {'NEXT TRY':20}  SENDER -> PENDING")
    for item in items:
        pending = _pending(item)
        print(
            f"{item.id:16}  {_when(item.created):20}  {item.size:>8}  "
            f"{_when(item.next_attempt):20}  <{item.sender}> -> {', '.join(pending)}"
        )
        errors = {r.last_error for r in item.recipients if r.state == QUEUE_PENDING}
        for error in sorted(e for e in errors if e):
            print(f"{'':18}({error})")
    print(f"{len(items)} message(s)")
    return 0


async def cmd_show(service: MailService, args: argparse.Namespace) -> int:
    import json

    item = await _require(service, args.id)
    if args.json:
        print(json.dumps(_as_json(item), indent=2, sort_keys=True))
        return 0
    print(f"id:         {item.id}")
    print(f"sender:     <{item.sender}>")
    print(f"queued:     {_when(item.created)}")
    print(f"size:       {item.size}")
    print(f"next try:   {_when(item.next_attempt)}")
    print(f"delay notice sent: {'yes' if item.warned else 'no'}")
    for r in item.recipients:
        line = f"  <{r.address}>  {r.state}, {r.attempts} attempt(s)"
        if r.state == QUEUE_PENDING:
            line += f", next {_when(r.next_attempt)}"
        print(line)
        if r.last_error:
            print(f"      {r.last_error}")
    content = await service.store.queue_content(item.id)
    print()
    print(original_headers(content).decode("utf-8", "replace"), end="")
    return 0


async def cmd_retry(service: MailService, args: argparse.Namespace) -> int:
    if args.id is not None:
        await _require(service, args.id)
    count = await service.store.queue_retry(args.id.upper() if args.id else None, time.time())
    print(f"{count} message(s) due now")
    return 0


async def cmd_delete(service: MailService, args: argparse.Namespace) -> int:
    if not await service.store.queue_delete(args.id.upper()):
        raise NotFound(f"no message {args.id} in the outbound queue (see pobox queue list)")
    print(f"deleted {args.id.upper()}")
    return 0


async def cmd_bounce(service: MailService, args: argparse.Namespace) -> int:
    item = await _require(service, args.id)
    pending = _pending(item)
    now = time.time()
    if item.sender and pending:
        content = await service.store.queue_content(item.id)
        report = build_report(
            hostname=service.config.hostname,
            original_sender=item.sender,
            reports=[RecipientReport(r, ACTION_FAILED, BOUNCED_BY_ADMIN) for r in pending],
            content=content,
            arrival=item.created,
            now=now,
            queue_id=item.id,
        )
        queue = OutboundQueue(service.store)
        await deliver_notice(service.store, queue, service.delivery, item.sender, report)
    results = [RecipientResult(r, QUEUE_FAILED, BOUNCED_BY_ADMIN) for r in pending]
    await service.store.queue_record(item.id, results, now)
    told = f"bounce sent to <{item.sender}>" if item.sender else "null sender: no bounce"
    print(f"{item.id}: gave up on {len(pending)} recipient(s); {told}")
    return 0
