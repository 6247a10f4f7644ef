"""How throughput grows with worker processes: 1, 2 and 4 gevent workers against an uncapped sandbox.

``python -m bench.scaleout --messages 10000`` sends one campaign per worker count with a cap far above what
the workers can reach (100 ms latency) and prints messages/s and the ratio to one process.
"""

from __future__ import annotations

import argparse

from bench.harness import (
    DEFAULT_LATENCY_MS,
    Bench,
    ServiceOptions,
    markdown_table,
    mb,
    print_machine_info,
    run_cli,
    run_queue_campaign,
)

# High enough that neither the sandbox nor the shared limiter ever makes a sender wait.
UNCAPPED_MPS = 1_000_000


def main(argv: list[str] | None = None) -> int:
    """Run one campaign per worker count and print the scaling table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaleout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000, help="messages per run (default 10000)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to try (default 1,2,4)")
    ServiceOptions.add_arguments(parser)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="sandbox latency (default 100)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service logs and say where")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    options = ServiceOptions.from_arguments(args)
    print_machine_info()
    runs = []
    with Bench(keep_logs=args.keep_logs) as bench:
        bench.start_sandbox(UNCAPPED_MPS, args.latency_ms)
        for count in counts:
            runs.append(
                run_queue_campaign(
                    bench,
                    cap=UNCAPPED_MPS,
                    messages=args.messages,
                    workers=count,
                    options=options,
                    latency_ms=args.latency_ms,
                    label=f"scaleout-{count}w",
                )
            )
    base = next((r.delivery.rate for r in runs if r.workers == 1), runs[0].delivery.rate if runs else 0.0)
    rows = []
    for run in runs:
        per_msg = 1000 / max(1, run.processed)
        rows.append(
            [
                str(run.workers),
                str(run.messages),
                run.status,
                f"{run.delivery.rate:.1f}",
                f"{run.delivery.rate / base:.2f}x" if base else "–",
                f"{run.cpu_ms_per_msg:.2f}",
                f"{run.sandbox_cpu_s * per_msg:.2f}",
                mb(run.worker_peak_rss_kb),
                str(run.duplicates),
                f"{run.busy_cores:.2f}",
            ]
        )
    print()
    print(
        markdown_table(
            (
                "worker processes",
                "messages",
                "status",
                "msg/s",
                "vs 1 process",
                "worker CPU ms/msg",
                "sandbox CPU ms/msg",
                "worker peak RSS MB",
                "dupes",
                "busy cores*",
            ),
            rows,
        )
    )
    print("* the whole machine's average number of busy cores during the run, others' load included")
    return 0


if __name__ == "__main__":
    run_cli(main)
