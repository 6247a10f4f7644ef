"""What a SIGKILL leaves unknown: a campaign on two workers, one of them killed several times.

``python -m bench.crash`` sends 6,000 messages at 300/s (100 ms latency, 5 % of requests answered 5xx) on two
gevent workers with beat sweeping every second, SIGKILLs one worker three times (restarting it a second
later) and prints how many recipients ended unknown per kill, how many reached WhatsApp twice, and the
workers' CPU per message. ``--webhooks`` also has the sandbox post sent/delivered/read notifications to
the API, as in production: a message WhatsApp reported on must then never stay unknown.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import psycopg

from bench.harness import (
    Bench,
    CpuMeter,
    ServiceOptions,
    contacts_csv,
    markdown_table,
    print_machine_info,
    run_cli,
    sandbox_delivery,
)

APP_SECRET = "bench-app-secret"


def main(argv: list[str] | None = None) -> int:
    """Run the campaign with kills and print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=6_000)
    parser.add_argument("--cap", type=int, default=300, help="messages/s of the number (default 300)")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--error-share", type=float, default=0.05, help="share of requests answered 5xx")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--every-s", type=float, default=3.0, help="seconds between kills (default 3)")
    parser.add_argument("--webhooks", action="store_true", help="notifications posted to the API as WhatsApp does")
    ServiceOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    options = ServiceOptions.from_arguments(args)
    print_machine_info()
    with Bench() as bench:
        sandbox = bench.start_sandbox(args.cap, args.latency_ms)
        sandbox.configure(error_5xx_share=args.error_share)
        bench.register_buzon(args.cap)
        env = bench.service_env(options)
        env.update(SWEEP_INTERVAL_S="1", STALE_BATCH_S="5", WORKER_HEARTBEAT_TTL_S="4", WHATSAPP_APP_SECRET=APP_SECRET)
        steady, victim = bench.start_workers(2, env, options.concurrency)
        beat = bench.start_beat(env)
        api = bench.start_api(env)
        if args.webhooks:
            sandbox.configure(webhook_url=api.url + "/webhooks/whatsapp", app_secret=APP_SECRET)
        cpu = CpuMeter(bench.worker_pids)
        cpu.start()
        try:
            _, created = api.create_campaign(contacts_csv(args.messages), f"bench crash {time.time_ns()}")
            campaign_id = created["campaign_id"]
            for kill in range(args.kills):
                time.sleep(args.every_s)
                bench.say(f"kill {kill + 1}: SIGKILL to {victim.name}")
                os.killpg(victim.pid, signal.SIGKILL)
                victim.stop()  # reaps it and closes its log
                bench.workers.remove(victim)
                time.sleep(1)
                (victim,) = bench.start_workers(1, env, options.concurrency)
            final = api.wait_finished(campaign_id, 600, watch=[steady])
            cpu_s = cpu.stop()
            if args.webhooks:
                sandbox.flush_webhooks(timeout=120)
                time.sleep(3)  # the workers apply the last notifications
            with psycopg.connect(bench.dsn) as conn:
                rows = dict(
                    conn.execute(
                        "SELECT status, count(*) FROM instancia_sofia.leads_activos WHERE campaign_id = %s GROUP BY 1",
                        (campaign_id,),
                    ).fetchall()
                )
        finally:
            beat.stop()
        delivery = sandbox_delivery(sandbox)
    unknown = rows.get("unknown", 0)
    processed = rows.get("sent", 0) + rows.get("failed", 0)
    print(
        markdown_table(
            [
                "messages",
                "cap",
                "webhooks",
                "kills",
                "status",
                "sent",
                "failed",
                "unknown",
                "unknown/kill",
                "twice",
                "worker CPU ms/msg",
            ],
            [
                [
                    args.messages,
                    args.cap,
                    "yes" if args.webhooks else "no",
                    args.kills,
                    final["status"],
                    rows.get("sent", 0),
                    rows.get("failed", 0),
                    unknown,
                    f"{unknown / max(1, args.kills):.1f}",
                    delivery.accepted - delivery.distinct,
                    f"{1000 * cpu_s / max(1, processed):.2f}",
                ]
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
