"""Throughput of the old sequential sender, the asyncio proposal and this system, side by side on one sandbox.

``python -m bench.throughput --messages 5000`` runs, at the 80/s and the 1,000/s caps with 100 ms sandbox
latency: (a) the sequential sender with 0 and 12.5 ms delays, (b) the asyncio + httpx proposal, and (c) this
system (API + gevent Celery workers), then prints one table.
"""

from __future__ import annotations

import argparse

from bench.baselines import PROPOSAL, RESULT_HEADERS, SEQUENTIAL, baseline_row, run_baseline
from bench.harness import (
    DEFAULT_LATENCY_MS,
    Bench,
    QueueRun,
    ServiceOptions,
    markdown_table,
    mb,
    print_machine_info,
    run_cli,
    run_queue_campaign,
)

SYSTEMS = ("sequential", "proposal", "queue")


def queue_name(run: QueueRun) -> str:
    """The label of this system's row."""
    return f"(c) this system, {run.workers} worker{'s' if run.workers > 1 else ''}"


def queue_row(run: QueueRun) -> list[str]:
    """A row of the results table; peak RSS is the largest worker process's."""
    return [
        queue_name(run),
        f"{run.cap:g}",
        str(run.messages),
        str(run.delivery.accepted),
        f"{run.wall_s:.1f}",
        f"{run.delivery.rate:.1f}",
        str(run.delivery.rate_limited),
        str(run.rate_limit_failures),
        f"{run.cpu_ms_per_msg:.2f}",
        mb(run.worker_peak_rss_kb),
    ]


DETAIL_HEADERS = (
    "system",
    "cap/s",
    "status",
    "sent",
    "failed",
    "dupes",
    "upload s",
    "worker RSS first→last MB",
    "sandbox CPU ms/msg",
    "Postgres CPU ms/msg",
    "Redis CPU ms/msg*",
    "busy cores*",
)


def queue_detail_row(run: QueueRun) -> list[str]:
    """The system run's supporting figures: correctness, timing, memory trend, and CPU outside the workers."""
    per_msg = 1000 / max(1, run.processed)
    redis_ms = "–" if run.redis_cpu_s is None else f"{run.redis_cpu_s * per_msg:.2f}"
    return [
        queue_name(run),
        f"{run.cap:g}",
        run.status,
        str(run.sent),
        str(run.failed),
        str(run.duplicates),
        f"{run.upload_s:.2f}",
        f"{mb(run.worker_rss_first_kb)}→{mb(run.worker_rss_last_kb)}",
        f"{run.sandbox_cpu_s * per_msg:.2f}",
        f"{run.db_cpu_s * per_msg:.2f}",
        redis_ms,
        f"{run.busy_cores:.2f}",
    ]


def rss_trace(run: QueueRun, points: int = 11) -> str:
    """The largest worker's resident size at evenly spaced moments of the run, to see whether it keeps growing."""
    series = run.rss_series
    if not series:
        return "(no samples)"
    start = series[0][0]
    picks = (
        [series[round(i * (len(series) - 1) / (points - 1))] for i in range(points)]
        if len(series) >= points
        else series
    )
    return "  ".join(f"{t - start:.0f}s:{kb / 1024:.0f}" for t, kb in picks)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--messages", type=int, default=100_000, help="messages for this system at caps above 100/s (default 100000)"
    )
    parser.add_argument(
        "--messages-80",
        type=int,
        default=4000,
        dest="messages_low",
        help="messages for this system at caps of 100/s or less (default 4000, ~50 s at 80/s)",
    )
    parser.add_argument(
        "--proposal-messages",
        type=int,
        default=2000,
        help="messages for the asyncio proposal per cap (default 2000; it is CPU-bound)",
    )
    parser.add_argument(
        "--sequential-messages",
        type=int,
        default=200,
        help="messages per sequential run; it sends ~9/s at 100 ms latency (default 200)",
    )
    parser.add_argument("--caps", default="80,1000", help="sandbox caps in messages/s (default 80,1000)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}")
    parser.add_argument("--delays", default="0,12.5", help="sequential sender delays in ms (default 0,12.5)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of this system (default 2)")
    ServiceOptions.add_arguments(parser)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="sandbox latency (default 100)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service logs and say where")
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every selected system at every cap and print the tables."""
    args = parse_args(argv)
    caps = [float(c) for c in args.caps.split(",") if c.strip()]
    delays = [float(d) for d in args.delays.split(",") if d.strip()]
    options = ServiceOptions.from_arguments(args)
    print_machine_info()
    rows, details, queue_runs = [], [], []
    with Bench(keep_logs=args.keep_logs) as bench:
        bench.start_sandbox(caps[0], args.latency_ms)
        for cap in caps:
            if "sequential" in args.systems:
                for delay in delays:
                    run = run_baseline(
                        bench,
                        SEQUENTIAL,
                        cap=cap,
                        messages=args.sequential_messages,
                        delay_ms=delay,
                        latency_ms=args.latency_ms,
                    )
                    rows.append(baseline_row(run))
            if "proposal" in args.systems:
                run = run_baseline(
                    bench, PROPOSAL, cap=cap, messages=args.proposal_messages, latency_ms=args.latency_ms
                )
                rows.append(baseline_row(run))
            if "queue" in args.systems:
                messages = args.messages if cap > 100 else args.messages_low
                qrun = run_queue_campaign(
                    bench,
                    cap=cap,
                    messages=messages,
                    workers=args.workers,
                    options=options,
                    latency_ms=args.latency_ms,
                    label=f"queue@{cap:g}",
                )
                rows.append(queue_row(qrun))
                details.append(queue_detail_row(qrun))
                queue_runs.append(qrun)
    print()
    print(markdown_table(RESULT_HEADERS, rows))
    if details:
        print()
        print(markdown_table(DETAIL_HEADERS, details))
        print(
            "* Redis is shared with other processes on this machine, so its CPU figure is an upper bound; "
            "busy cores is the whole machine's average during the run, others' load included."
        )
        for run in queue_runs:
            print(f"worker RSS MB over the {run.cap:g}/s run: {rss_trace(run)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
