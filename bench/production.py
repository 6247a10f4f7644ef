"""The whole production load: a campaign at the cap while WhatsApp posts every status of every message.

``python -m bench.production`` sends 30,000 messages at a 1,000/s cap (100 ms latency) on two gevent workers
(``-Q campaigns``) with beat, a webhook worker (``-Q webhooks -c 4``), the API under gunicorn (``-k gevent
-w 2``) and the notification receiver, as compose runs them, while the sandbox posts sent, delivered and read
for every accepted message to the receiver's ``/webhooks/whatsapp`` (``--intake api``: the API's) as WhatsApp
does: signed, one status per POST, over
keep-alive connections, each status 50–500 ms after the previous one. It prints the sustained msg/s at the
sandbox, 130429 answers, the notification lag (last send to last status applied), notifications refused or
lost, and the CPU per message sent of each process group: ours (API with the receiver, workers, beat), Redis
and PostgreSQL, and the sandbox apart.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psycopg

from bench.harness import (
    BUZON,
    PHONE_NUMBER_ID,
    TOKEN,
    ApiClient,
    Bench,
    CpuMeter,
    Delivery,
    ServiceOptions,
    ServiceProcess,
    contacts_csv,
    free_port,
    markdown_table,
    percentile,
    print_machine_info,
    process_tree,
    run_cli,
    sandbox_delivery,
)
from bench.status_reads import LoadResult, paced_load
from sandbox.process import SandboxHandle
from tasks.vocabulary import CAMPAIGNS_QUEUE, WEBHOOKS_QUEUE

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


# (buzón, phone number id, token) of each sender number a run may use.
NUMBERS = [(BUZON, PHONE_NUMBER_ID, TOKEN), ("bench2", "100000000009002", "bench-token-2")]


def combined(deliveries: list[Delivery]) -> Delivery:
    """What the sandbox accepted from every number together: the aggregate rate is over the union of times."""
    return Delivery(
        accepted=sum(d.accepted for d in deliveries),
        distinct=sum(d.distinct for d in deliveries),
        first_at=min((d.first_at for d in deliveries if d.first_at), default=None),
        last_at=max((d.last_at for d in deliveries if d.last_at), default=None),
        rejected={code: sum(d.rejected.get(code, 0) for d in deliveries) for d in deliveries for code in d.rejected},
    )


def served_times_ms(access_log: Path, prefix: str) -> list[float]:
    """gunicorn's request times (access log lines "<path> <microseconds>") of the paths under `prefix`, in ms."""
    if not access_log.exists():
        return []
    times = []
    for line in access_log.read_text().splitlines():
        path, _, micros = line.strip().strip("'").rpartition(" ")
        if path.startswith(prefix) and micros.isdigit():
            times.append(int(micros) / 1000)
    return times


class StatusReads:
    """GET /api/estado-cola/<id> at a steady rate for most of the campaign, from a thread of its own."""

    def __init__(self, api: ApiClient, campaign_id: str, rate: float, duration_s: float, path: str | None = None):
        self.result: LoadResult | None = None
        self.path = path or f"/api/estado-cola/{campaign_id}"
        self._thread = threading.Thread(target=self._run, args=(api, rate, duration_s), daemon=True)
        if rate > 0:
            self._thread.start()

    def _run(self, api: ApiClient, rate: float, duration_s: float) -> None:
        headers = {k: str(v) for k, v in api.session.headers.items() if k.lower() in {"x-api-key", "authorization"}}
        # In a process of its own: in this one the generator's loop would wait for the GIL behind the
        # harness's other threads (the sandbox's counters, the campaign's polls) and count that as latency.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            url = api.url + self.path
            self.result = pool.submit(paced_load, url, rate, duration_s, 16, headers).result()

    def join(self) -> None:
        """Wait for the reads to finish."""
        if self._thread.is_alive():
            self._thread.join()


class PostedStatuses:
    """How many statuses the sandbox has posted, sampled every quarter second from a thread of its own.

    It tells the notification lag's two parts apart: WhatsApp still posting (the sandbox behind, on a machine
    it shares with us) and our part, from its last POST to the store having every status.
    """

    def __init__(self, sandbox: SandboxHandle, interval_s: float = 0.25):
        self.samples: list[tuple[float, int]] = []  # (wall clock, statuses posted)
        self._sandbox = sandbox
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                counters = self._sandbox.webhooks(since=10**12)["counters"]
            except Exception:  # a busy sandbox answers late; the next sample counts
                continue
            self.samples.append((time.time(), sum(counters["statuses"].values())))

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def posted_by(self, at: float) -> int:
        """Statuses posted by wall-clock time `at` (the last sample before it)."""
        return max((n for t, n in self.samples if t <= at), default=0)

    def last_short_of(self, total: int) -> float | None:
        """The last time a sample saw fewer than `total` statuses posted: from then on, at most the rest were
        still to post."""
        return max((t for t, n in self.samples if n < total), default=None)


def start_receiver(bench: Bench, env: dict[str, str]) -> tuple[ServiceProcess, str]:
    """The notification receiver (webapi/receiver.py) on a free port, once it answers."""
    import requests

    port = free_port()
    command = [sys.executable, "-m", "webapi.receiver", "--host", "127.0.0.1", "--port", str(port)]
    process = ServiceProcess("receiver", command, env, bench.log_dir)
    bench.others.append(process)  # stopped with the services if the bench fails
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/healthz", timeout=2)
            return process, url
        except requests.RequestException:
            process.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start") from None
            time.sleep(0.1)


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
    parser.add_argument(
        "--intake",
        choices=("receiver", "api"),
        default="receiver",
        help="where the notifications go: the receiver process (default, as compose runs it) or the API's route",
    )
    parser.add_argument(
        "--numbers",
        type=int,
        choices=(1, 2),
        default=1,
        help="sender numbers, each with a campaign of --messages at its own --cap, all at once (default 1)",
    )
    parser.add_argument(
        "--status-rps", type=float, default=100.0, help="estado-cola reads per second while it sends (0: none)"
    )
    parser.add_argument(
        "--reads-floor",
        action="store_true",
        help="read /healthz instead (no key, no Redis): the floor of a read's latency on this machine under the load",
    )
    parser.add_argument(
        "--shared-workers",
        action="store_true",
        help="no webhook worker: the two workers send and drain (as without -Q), instead of sending only",
    )
    ServiceOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    options = ServiceOptions.from_arguments(args)
    print_machine_info()
    with Bench() as bench:
        sandbox = bench.start_sandbox(args.cap, args.latency_ms)
        numbers = NUMBERS[: args.numbers]
        sandbox.configure(
            tokens={number: token for _, number, token in numbers},
            mps={number: float(args.cap) for _, number, _ in numbers},
        )
        for buzon, number, token in numbers:
            bench.register_buzon(args.cap, buzon, number, token)
        env = bench.service_env(options)
        env.update(WHATSAPP_APP_SECRET=APP_SECRET)
        separate = not args.shared_workers and not args.no_webhooks
        bench.start_workers(2, env, options.concurrency, queues=CAMPAIGNS_QUEUE if separate else None)
        drainers = bench.start_workers(1, env, 4, queues=WEBHOOKS_QUEUE) if separate else []

        def drainer_pids() -> list[int]:
            """Every process of the webhook worker."""
            return [pid for w in drainers if w.alive() for pid in process_tree(w.pid)]

        beat = bench.start_beat(env)
        # gunicorn's own time for each status read (from its request parsed to its last byte written), apart
        # from what the client sees: on a saturated machine the rest is the wait for a core on either side.
        access_log = bench.log_dir / "api-access.log"
        api_env = env
        if args.status_rps > 0:
            api_env = {**env, "GUNICORN_CMD_ARGS": f"--access-logfile {access_log} --access-logformat '%(U)s %(D)s'"}
        api = bench.start_api(api_env, workers=args.api_workers)
        receiver = start_receiver(bench, env) if args.intake == "receiver" and not args.no_webhooks else None
        if not args.no_webhooks:
            sandbox.configure(
                webhook_url=(receiver[1] if receiver else api.url) + "/webhooks/whatsapp",
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
            "receiver": CpuMeter(lambda: [receiver[0].pid] if receiver else []),
            "workers": CpuMeter(bench.worker_pids),
            "of which webhook worker": CpuMeter(drainer_pids),
            "beat": CpuMeter(lambda: process_tree(beat.pid)),
            "Redis": CpuMeter(lambda: [p] if (p := bench.redis_server_pid()) else []),
            "PostgreSQL": CpuMeter(bench.db_backend_pids),
            "sandbox": CpuMeter(lambda: [sandbox.process.pid]),
        }
        for meter in groups.values():
            meter.start()
        try:
            csv = contacts_csv(args.messages)
            campaign_ids = [
                api.create_campaign(csv, f"bench production {buzon} {time.time_ns()}", buzon=buzon)[1]["campaign_id"]
                for buzon, _, _ in numbers
            ]
            path = "/healthz" if args.reads_floor else None
            reads = StatusReads(api, campaign_ids[0], args.status_rps, 0.8 * args.messages / args.cap, path)
            posted = None if args.no_webhooks else PostedStatuses(sandbox)
            finals = [api.wait_finished(campaign_id, 600) for campaign_id in campaign_ids]
            sent_total = sum(f["sent"] for f in finals)
            applied_at = None
            if posted is not None:
                # Every message sent gets delivered and read: wait until the store has them all, before
                # anything else asks the sandbox for its log (30,000 messages take it a while to list).
                deadline = time.monotonic() + 300
                while sum(applied_statuses(bench.dsn, c)[1] for c in campaign_ids) < sent_total:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                applied_at = time.time()
                posted.stop()
            reads.join()
            server_read_ms = served_times_ms(access_log, reads.path)
            deliveries = [sandbox_delivery(sandbox, number) for _, number, _ in numbers]
            delivery = combined(deliveries)
            lag_s = 0.0 if applied_at is None else applied_at - (delivery.last_at or applied_at)
            behind = ours_lag_s = None
            if posted is not None and applied_at is not None and delivery.last_at:
                expected_statuses = 3 * sent_total
                behind = expected_statuses - posted.posted_by(delivery.last_at)
                still_posting = posted.last_short_of(expected_statuses)
                ours_lag_s = applied_at - still_posting if still_posting else None
            cpu = {name: meter.stop() for name, meter in groups.items()}
            hooks = sandbox.webhooks(since=10**12)["counters"] if not args.no_webhooks else {}
            applied = [applied_statuses(bench.dsn, c) for c in campaign_ids]
            delivered, read = sum(a[0] for a in applied), sum(a[1] for a in applied)
            final = {"sent": sum(f["sent"] for f in finals)}
        finally:
            beat.stop()
            if receiver:
                receiver[0].stop()
    sent = max(1, final["sent"])
    ours = cpu["API"] + cpu["receiver"] + cpu["workers"] + cpu["beat"]

    def per_msg(seconds: float) -> str:
        """Milliseconds of CPU per message sent."""
        return f"{1000 * seconds / sent:.2f}"

    print(
        markdown_table(
            [
                "numbers",
                "messages",
                "cap",
                "webhooks",
                "sent",
                "msg/s",
                "130429",
                "lag s",
                "delivered",
                "read",
                "posts failed",
            ],
            [
                [
                    args.numbers,
                    args.messages * args.numbers,
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
    if behind is not None:
        print()
        print(
            markdown_table(
                [
                    "the lag's parts",
                    "statuses not yet posted at the last send",
                    "ours: at most, from the sandbox still posting to all applied, s",
                ],
                [["", behind, "–" if ours_lag_s is None else f"{ours_lag_s:.1f}"]],
            )
        )
    if reads.result:
        result = reads.result
        print()
        print(
            markdown_table(
                [
                    "/healthz (the floor) during the run" if args.reads_floor else "estado-cola during the run",
                    "requests",
                    "answered/s",
                    "errors",
                    "p50 ms",
                    "p99 ms",
                    "in gunicorn: p50 ms",
                    "p99 ms",
                ],
                [
                    [
                        f"{args.status_rps:g}/s open loop",
                        result.requested,
                        f"{result.achieved_rps:.1f}",
                        sum(result.errors.values()),
                        f"{1000 * result.percentile(50):.1f}",
                        f"{1000 * result.percentile(99):.1f}",
                        f"{percentile(server_read_ms, 50):.1f}" if server_read_ms else "–",
                        f"{percentile(server_read_ms, 99):.1f}" if server_read_ms else "–",
                    ]
                ],
            )
        )
    if len(deliveries) > 1:
        print()
        print(
            markdown_table(
                ["number", "accepted", "msg/s", "130429"],
                [
                    [n, d.accepted, f"{d.rate:.1f}", d.rate_limited]
                    for (_, n, _), d in zip(numbers, deliveries, strict=True)
                ],
            )
        )
    print()
    print(
        markdown_table(
            [
                "CPU ms/msg",
                "ours (API+receiver+workers+beat)",
                "API",
                "receiver",
                "workers",
                "of which webhook worker",
                "beat",
                "Redis",
                "PostgreSQL",
                "sandbox",
            ],
            [
                [
                    "",
                    per_msg(ours),
                    per_msg(cpu["API"]),
                    per_msg(cpu["receiver"]),
                    per_msg(cpu["workers"]),
                    per_msg(cpu["of which webhook worker"]) if drainers else "–",
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
