"""Latency of POST /webhooks/whatsapp at a steady 500 signed notifications/s, and how fast they are applied.

``python -m bench.webhooks`` sends a campaign through an uncapped sandbox, then POSTs signed status
notifications (delivered and read for the campaign's real wamids) to the API at the given rate with an
open-loop generator (each request has a scheduled start and its latency counts from it), prints
p50/p90/p99, then waits for the worker to apply everything and reports how long that took.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import time

import aiohttp
import psycopg

from bench.harness import (
    Bench,
    ServiceOptions,
    contacts_csv,
    markdown_table,
    percentile,
    print_machine_info,
    run_cli,
)
from tasks import keys

SECRET = "bench-app-secret"


def notification(statuses: list[dict]) -> bytes:
    """A status notification body in Meta's shape."""
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "waba",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "1"},
                                "statuses": statuses,
                            },
                        }
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()


def signature(body: bytes) -> str:
    """The X-Hub-Signature-256 value for a body."""
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


async def _load(url: str, bodies: list[bytes], rate: float) -> tuple[list[float], int]:
    """POST each body at its scheduled time; latency counts from the schedule, so queueing shows."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic() + 0.2

        async def one(i: int, body: bytes) -> None:
            nonlocal errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature(body)}
                ) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.monotonic() - due)

        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return latencies, errors


def main(argv: list[str] | None = None) -> int:
    """Send a campaign, load the webhook route, print latency and apply-lag tables."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="notifications/s (default 500)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    parser.add_argument("--messages", type=int, default=5000, help="campaign size whose wamids are notified")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service logs and say where")
    args = parser.parse_args(argv)
    print_machine_info()
    rows = []
    with Bench(keep_logs=args.keep_logs) as bench:
        bench.start_sandbox(cap=1_000_000, latency_ms=20)
        bench.register_buzon(100_000)
        env = bench.service_env(ServiceOptions(extra_env={"WHATSAPP_APP_SECRET": SECRET}))
        bench.start_workers(1, env)
        api = bench.start_api(env)
        _, created = api.create_campaign(contacts_csv(args.messages), f"webhooks {time.time_ns()}")
        campaign_id = created["campaign_id"]
        api.wait_finished(campaign_id, timeout=300)
        with psycopg.connect(bench.dsn) as conn:
            wamids = [
                r[0]
                for r in conn.execute(
                    "SELECT wamid FROM instancia_sofia.leads_activos WHERE campaign_id = %s ORDER BY seq",
                    (campaign_id,),
                )
            ]
        now = int(time.time())
        count = int(args.rate * args.duration)
        single = [
            notification(
                [
                    {
                        "id": wamids[i % len(wamids)],
                        "status": "delivered" if i < len(wamids) else "read",
                        "timestamp": str(now + i // len(wamids)),
                        "recipient_id": "584140000000",
                    }
                ]
            )
            for i in range(count)
        ]
        big = [
            notification(
                [
                    {
                        "id": wamids[j % len(wamids)],
                        "status": "read",
                        "timestamp": str(now + 10),
                        "recipient_id": "584140000000",
                    }
                    for j in range(k * 1000, (k + 1) * 1000)
                ]
            )
            for k in range(20)
        ]
        url = f"{api.url}/webhooks/whatsapp"
        for label, bodies, rate in (("1 status per POST", single, args.rate), ("1,000 statuses per POST", big, 5.0)):
            bench.say(f"POSTing {len(bodies)} notifications ({label}) at {rate:g}/s")
            began = time.monotonic()
            latencies, errors = asyncio.run(_load(url, bodies, rate))
            sent_for = time.monotonic() - began
            while bench._redis.llen(keys.WEBHOOK_INBOX):
                time.sleep(0.1)
            lag = time.monotonic() - began - sent_for
            rows.append(
                [
                    label,
                    f"{rate:g}",
                    str(len(bodies)),
                    *(f"{1000 * percentile(latencies, p):.1f}" for p in (50, 90, 99)),
                    f"{1000 * max(latencies, default=math.nan):.1f}",
                    str(errors),
                    f"{max(0.0, lag):.1f}",
                ]
            )
        state = api.status(campaign_id)
    print()
    print(
        markdown_table(
            (
                "bodies",
                "POST/s",
                "POSTs",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "errors",
                "inbox drained s after last POST",
            ),
            rows,
        )
    )
    print(f"campaign {args.messages} messages: delivered {state['delivered']}, read {state['read']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
