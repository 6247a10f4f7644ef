"""The notification intake against its floor: our `POST /webhooks/whatsapp` and a bare "return 200" app.

``python -m bench.intake`` runs each under the same server as deployed (gunicorn ``-k gevent -w 2``), then
the notification receiver (``python -m webapi.receiver``) and that server answering 200 unchecked, one
after the other, and POSTs signed one-status notifications at a steady rate (default 2,000/s for 15 s) over
keep-alive connections; it prints, for each, the server's CPU per POST (all its processes), p50/p99
latency and errors, and the ratio of ours to the floor. Ours also verifies the signature, checks the JSON
and keeps each body in Redis before answering.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.harness import (
    Bench,
    CpuMeter,
    ServiceOptions,
    ServiceProcess,
    free_port,
    markdown_table,
    percentile,
    print_machine_info,
    process_tree,
    run_cli,
)
from bench.webhooks import SECRET, _load, notification
from tasks import keys


def serve(bench: Bench, app: str, env: dict[str, str], workers: int) -> tuple[ServiceProcess, str]:
    """Start `app` (a WSGI app under gunicorn, or "receiver": webapi/receiver.py) and wait until it answers."""
    import requests

    port = free_port()
    if app == "receiver":
        command = [sys.executable, "-m", "webapi.receiver", "--host", "127.0.0.1", "--port", str(port)]
    elif app == "bare receiver":
        command = [sys.executable, "-m", "bench.bare_app", str(port)]
    else:
        command = [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers), "-b", f"127.0.0.1:{port}", app]
    process = ServiceProcess(f"intake-{app.split(':')[0]}", command, env, bench.log_dir)
    bench.others.append(process)  # stopped with the services if the bench fails
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/healthz", timeout=2)
            return process, url
        except requests.RequestException:
            process.check()
            time.sleep(0.2)
    raise RuntimeError(f"{app} did not start")


def main(argv: list[str] | None = None) -> int:
    """Load both servers in turn and print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.intake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    args = parser.parse_args(argv)
    print_machine_info()
    count = int(args.rate * args.duration)
    now = int(time.time())
    bodies = [
        notification([{"id": f"wamid.bench{i}", "status": "read", "timestamp": str(now), "recipient_id": "1"}])
        for i in range(count)
    ]
    rows = []
    with Bench() as bench:
        bench.start_sandbox(cap=1_000, latency_ms=0)
        env = bench.service_env(ServiceOptions(extra_env={"WHATSAPP_APP_SECRET": SECRET}))
        results = {}
        servers = (
            ("bare return 200", "bench.bare_app:app"),
            ("ours: the API's route", "webapi:create_app()"),
            ("bare receiver", "bare receiver"),
            ("ours: the receiver", "receiver"),
        )
        for label, app in servers:
            process, url = serve(bench, app, env, args.workers)
            try:
                cpu = CpuMeter(lambda process=process: process_tree(process.pid))
                cpu.start()
                latencies, errors = asyncio.run(_load(url + "/webhooks/whatsapp", bodies, args.rate))
                used = cpu.stop()
            finally:
                process.stop()
            results[label] = used / max(1, len(latencies))
            rows.append(
                [
                    label,
                    count,
                    errors,
                    f"{1000 * results[label]:.3f}",
                    f"{1000 * percentile(latencies, 50):.1f}",
                    f"{1000 * percentile(latencies, 99):.1f}",
                ]
            )
            bench._redis.delete(keys.WEBHOOK_INBOX)  # the bodies ours kept: nothing drains them here
    print(markdown_table(["server", "POSTs", "errors", "CPU ms/POST", "p50 ms", "p99 ms"], rows))
    floor = max(1e-9, results["bare return 200"])
    print(f"\nthe API's route / bare WSGI app under gunicorn: {results[servers[1][0]] / floor:.2f}x")
    print(f"the receiver / bare WSGI app under gunicorn: {results[servers[3][0]] / floor:.2f}x")
    print(f"the receiver / bare receiver: {results[servers[3][0]] / max(1e-9, results['bare receiver']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
