"""The whole production load: a campaign at the cap while WhatsApp posts every status of every message.

``python -m bench.production`` sends 30,000 messages at a 1,000/s cap (100 ms latency) on two gevent workers
with beat, the API under gunicorn (``-k gevent -w 2``), while the sandbox posts sent, delivered and read for
every accepted message to ``/webhooks/whatsapp`` as WhatsApp does: signed, one status per POST, over
keep-alive connections, each status 50–500 ms after the previous one. It prints the sustained msg/s at the
sandbox, 130429 answers, the notification lag (last send to last status applied), notifications refused or
lost, and the CPU per message sent of each process group: ours (API, workers, beat), Redis and PostgreSQL,
and the sandbox apart.
"""

from __future__ import annotations

import argparse
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
    process_tree,
    run_cli,
    sandbox_delivery,
)

APP_SECRET = "bench-app-secret"


def applied_statuses(dsn: str, campaign_id: str) -> tuple[int, int]:
    """(delivered or read, read) recipients of the campaign, as the store has them."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE delivery_status IN ('delivered', 'read')),"
            " count(*) FILTER (WHERE delivery_status = 'read')"
            " FROM instancia_sofia.leads_activos WHERE campaign_id = %s",
            (campaign_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main(argv: list[str] | None = None) -> int:
    """Run the campaign under the notification stream and print one table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.production", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--cap", type=int, default=1_000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn workers of the API (default 2)")
    parser.add_argument("--no-webhooks", action="store_true", help="the same campaign without notifications")
    parser.add_argument("--webhook-concurrency", type=int, default=64, help="notification POSTs in flight")
    ServiceOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    options = ServiceOptions.from_arguments(args)
    print_machine_info()
    with Bench() as bench:
        sandbox = bench.start_sandbox(args.cap, args.latency_ms)
        bench.register_buzon(args.cap)
        env = bench.service_env(options)
        env.update(WHATSAPP_APP_SECRET=APP_SECRET)
        bench.start_workers(2, env, options.concurrency)
        beat = bench.start_beat(env)
        api = bench.start_api(env, workers=args.api_workers)
        if not args.no_webhooks:
            sandbox.configure(
                webhook_url=api.url + "/webhooks/whatsapp",
                app_secret=APP_SECRET,
                delivered_share=1.0,
                read_share=1.0,
                webhook_batch_max=1,
                webhook_batch_ms=0,
                webhook_delay_ms=[50, 500],
                webhook_concurrency=args.webhook_concurrency,
            )
        api_pid = api.process.pid if api.process else 0
        groups = {
            "API": CpuMeter(lambda: process_tree(api_pid)),
            "workers": CpuMeter(bench.worker_pids),
            "beat": CpuMeter(lambda: process_tree(beat.pid)),
            "Redis": CpuMeter(lambda: [p] if (p := bench.redis_server_pid()) else []),
            "PostgreSQL": CpuMeter(bench.db_backend_pids),
            "sandbox": CpuMeter(lambda: [sandbox.process.pid]),
        }
        for meter in groups.values():
            meter.start()
        try:
            _, created = api.create_campaign(contacts_csv(args.messages), f"bench production {time.time_ns()}")
            campaign_id = created["campaign_id"]
            final = api.wait_finished(campaign_id, 600)
            delivery = sandbox_delivery(sandbox)
            lag_s = 0.0
            if not args.no_webhooks:
                # Every accepted message gets delivered and read: wait until the store has them all.
                deadline = time.monotonic() + 300
                while applied_statuses(bench.dsn, campaign_id)[1] < delivery.accepted and time.monotonic() < deadline:
                    time.sleep(0.2)
                lag_s = time.time() - (delivery.last_at or time.time())
            cpu = {name: meter.stop() for name, meter in groups.items()}
            hooks = sandbox.webhooks(since=10**12)["counters"] if not args.no_webhooks else {}
            delivered, read = applied_statuses(bench.dsn, campaign_id)
        finally:
            beat.stop()
    sent = max(1, final["sent"])
    ours = cpu["API"] + cpu["workers"] + cpu["beat"]

    def per_msg(seconds: float) -> str:
        """Milliseconds of CPU per message sent."""
        return f"{1000 * seconds / sent:.2f}"

    print(
        markdown_table(
            ["messages", "cap", "webhooks", "sent", "msg/s", "130429", "lag s", "delivered", "read", "posts failed"],
            [
                [
                    args.messages,
                    args.cap,
                    "no" if args.no_webhooks else "yes",
                    final["sent"],
                    f"{delivery.rate:.1f}",
                    delivery.rate_limited,
                    "–" if args.no_webhooks else f"{lag_s:.1f}",
                    delivered,
                    read,
                    hooks.get("failures", "–"),
                ]
            ],
        )
    )
    print()
    print(
        markdown_table(
            ["CPU ms/msg", "ours (API+workers+beat)", "API", "workers", "beat", "Redis", "PostgreSQL", "sandbox"],
            [
                [
                    "",
                    per_msg(ours),
                    per_msg(cpu["API"]),
                    per_msg(cpu["workers"]),
                    per_msg(cpu["beat"]),
                    per_msg(cpu["Redis"]),
                    per_msg(cpu["PostgreSQL"]),
                    per_msg(cpu["sandbox"]),
                ]
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
