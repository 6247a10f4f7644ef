"""Minimal versions of the alternatives a customer would weigh, sent against the same sandbox as the system.

(a) the old sequential sender: one ``requests.post`` at a time, wait for the answer, then a fixed delay
    (INTERVALO_ENVIO_MS), no retries;
(b) the earlier proposal: asyncio + ``httpx.AsyncClient``, batches of 100 messages sent with
    ``asyncio.gather``, five batches at once, no shared rate limit, no retries.

Each sender runs in its own process so its CPU time and memory are its own. Run alone it prints a table:
``python -m bench.baselines --cap 80 --messages 4000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.harness import (
    API_VERSION,
    DEFAULT_LATENCY_MS,
    LANGUAGE,
    PHONE_NUMBER_ID,
    RATE_LIMIT_CODE,
    ROOT,
    TEMPLATE,
    TOKEN,
    Bench,
    BenchError,
    Delivery,
    markdown_table,
    mb,
    phone,
    print_machine_info,
    recipient_parameters,
    run_cli,
    sandbox_delivery,
)

SEQUENTIAL = "sequential"
PROPOSAL = "proposal"
PROPOSAL_BATCH = 100
PROPOSAL_PARALLEL_BATCHES = 5
HTTP_TIMEOUT_S = 15.0


def _payload(i: int) -> dict[str, Any]:
    """The body the product would send to the i-th recipient (same builder as the workers use)."""
    from tasks.whatsapp import template_payload

    return template_payload(phone(i), TEMPLATE, LANGUAGE, recipient_parameters(i))


def _outcome(status_code: int, body: Any) -> str:
    """'sent', or the Graph error code as text, or 'http-<status>' when the answer has neither."""
    if status_code == 200 and isinstance(body, dict) and body.get("messages"):
        return "sent"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code") is not None:
        return str(error["code"])
    return f"http-{status_code}"


# ---- (a) the old sequential sender ----------------------------------------------------------------


def send_sequential(url: str, count: int, delay_ms: float) -> Counter[str]:
    """One request at a time, each waited for, then a fixed pause; a failure is final."""
    import requests

    headers = {"Authorization": f"Bearer {TOKEN}"}
    outcomes: Counter[str] = Counter()
    delay_s = delay_ms / 1000
    for i in range(count):
        try:
            response = requests.post(url, json=_payload(i), headers=headers, timeout=HTTP_TIMEOUT_S)
            try:
                body = response.json()
            except ValueError:
                body = None
            outcomes[_outcome(response.status_code, body)] += 1
        except requests.RequestException as exc:
            outcomes[f"error-{type(exc).__name__}"] += 1
        if delay_s:
            time.sleep(delay_s)
    return outcomes


# ---- (b) the earlier proposal: asyncio + httpx ----------------------------------------------------


async def _send_proposal(url: str, count: int, connections: int | None) -> Counter[str]:
    """Batches of 100 sent with gather, at most five batches at once, no rate limit and no retries."""
    import httpx

    outcomes: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(PROPOSAL_PARALLEL_BATCHES)
    # None keeps httpx's own pool limits, which is what the proposal's plain AsyncClient() gets.
    limits = (
        httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        if connections
        else httpx.Limits()
    )
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=HTTP_TIMEOUT_S, limits=limits
    ) as client:

        async def send_one(i: int) -> str:
            """POST one message and name its outcome."""
            try:
                response = await client.post(url, json=_payload(i))
            except httpx.HTTPError as exc:
                return f"error-{type(exc).__name__}"
            try:
                body = response.json()
            except ValueError:
                body = None
            return _outcome(response.status_code, body)

        async def send_batch(first: int) -> list[str]:
            """Send one batch of up to 100 messages at once, once a batch slot is free."""
            async with semaphore:
                last = min(first + PROPOSAL_BATCH, count)
                return await asyncio.gather(*(send_one(i) for i in range(first, last)))

        for batch in await asyncio.gather(*(send_batch(f) for f in range(0, count, PROPOSAL_BATCH))):
            outcomes.update(batch)
    return outcomes


def send_proposal(url: str, count: int, connections: int | None = None) -> Counter[str]:
    """Run the asyncio sender to completion."""
    return asyncio.run(_send_proposal(url, count, connections))


def client_main(args: argparse.Namespace) -> int:
    """The sender process: send, then print one JSON line with outcomes, CPU time, wall time and peak RSS."""
    # Import what the sender needs before the clock starts, so start-up cost is not charged per message.
    import httpx  # noqa: F401
    import requests  # noqa: F401

    from tasks.whatsapp import template_payload  # noqa: F401

    cpu_before, wall_before = time.process_time(), time.perf_counter()
    if args.client == SEQUENTIAL:
        outcomes = send_sequential(args.url, args.messages, args.delay_ms)
    else:
        outcomes = send_proposal(args.url, args.messages, args.connections)
    result = {
        "outcomes": dict(outcomes),
        "cpu_s": time.process_time() - cpu_before,
        "wall_s": time.perf_counter() - wall_before,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(result), flush=True)
    return 0


# ---- driving a baseline from the harness ----------------------------------------------------------


@dataclass
class BaselineRun:
    """The figures of one baseline run."""

    system: str
    cap: float
    messages: int
    outcomes: dict[str, int]
    cpu_s: float
    wall_s: float
    peak_rss_kb: int
    delivery: Delivery

    @property
    def rate_limit_failures(self) -> int:
        """Messages lost to 130429 (no retries, so every rejection is a lost message)."""
        return self.outcomes.get(RATE_LIMIT_CODE, 0)

    @property
    def rate(self) -> float:
        """Delivered messages per second of the sender's run.

        Not the sandbox's first-to-last arrival rate: a sender that bursts far above the cap gets one second's
        bucket accepted within milliseconds, which that formula would report as thousands per second.
        """
        return self.delivery.accepted / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_msg(self) -> float:
        """Sender CPU milliseconds per message attempted."""
        return 1000 * self.cpu_s / max(1, self.messages)


def run_baseline(
    bench: Bench,
    kind: str,
    *,
    cap: float,
    messages: int,
    delay_ms: float = 0.0,
    connections: int | None = None,
    latency_ms: float = DEFAULT_LATENCY_MS,
) -> BaselineRun:
    """Send messages with one baseline sender in a child process against the bench sandbox; measure."""
    sandbox = bench.configure_sandbox(cap, latency_ms)
    url = f"{sandbox.url}/{API_VERSION}/{PHONE_NUMBER_ID}/messages"
    command = [
        sys.executable,
        "-m",
        "bench.baselines",
        "--client",
        kind,
        "--url",
        url,
        "--messages",
        str(messages),
        "--delay-ms",
        str(delay_ms),
    ]
    if connections:
        command += ["--connections", str(connections)]
    name = system_name(kind, delay_ms, connections)
    bench.say(f"{name}: sending {messages} messages (cap {cap:g}/s)")
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise BenchError(f"{name} sender failed with status {process.returncode}:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    run = BaselineRun(
        system=name,
        cap=cap,
        messages=messages,
        outcomes=result["outcomes"],
        cpu_s=result["cpu_s"],
        wall_s=result["wall_s"],
        peak_rss_kb=result["peak_rss_kb"],
        delivery=sandbox_delivery(sandbox),
    )
    bench.say(
        f"{name}: {run.delivery.accepted} delivered, {run.rate:.1f} msg/s, "
        f"{run.rate_limit_failures} lost to 130429, {run.cpu_ms_per_msg:.2f} ms CPU/msg"
    )
    return run


def system_name(kind: str, delay_ms: float = 0.0, connections: int | None = None) -> str:
    """The label of a baseline in the tables."""
    if kind == SEQUENTIAL:
        return f"(a) sequential, {delay_ms:g} ms delay"
    pool = f", {connections} conns" if connections else ""
    return f"(b) asyncio+httpx 5x100{pool}"


RESULT_HEADERS = (
    "system",
    "cap/s",
    "messages",
    "delivered",
    "wall s",
    "msg/s",
    "130429 answers",
    "130429 failures",
    "CPU ms/msg",
    "peak RSS MB",
)


def baseline_row(run: BaselineRun) -> list[str]:
    """A row of the results table (RESULT_HEADERS); peak RSS is the sender process's."""
    return [
        run.system,
        f"{run.cap:g}",
        str(run.messages),
        str(run.delivery.accepted),
        f"{run.wall_s:.1f}",
        f"{run.rate:.1f}",
        str(run.delivery.rate_limited),
        str(run.rate_limit_failures),
        f"{run.cpu_ms_per_msg:.2f}",
        mb(run.peak_rss_kb),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the baselines alone at one cap and print their table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.baselines", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cap", type=float, default=80.0, help="sandbox messages/s cap (default 80)")
    parser.add_argument("--messages", type=int, default=4000, help="messages for the asyncio sender (default 4000)")
    parser.add_argument(
        "--sequential-messages",
        type=int,
        default=200,
        help="messages for each sequential run; it sends ~9/s at 100 ms latency (default 200)",
    )
    parser.add_argument("--delays", default="0,12.5", help="sequential delays in ms, comma separated")
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="httpx pool size for the asyncio sender (default: httpx's own, 100)",
    )
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="sandbox answer latency")
    # Internal: the sender process.
    parser.add_argument("--client", choices=(SEQUENTIAL, PROPOSAL), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args)

    print_machine_info()
    rows = []
    with Bench(needs_store=False) as bench:
        bench.start_sandbox(args.cap, args.latency_ms)
        for delay in (float(d) for d in args.delays.split(",") if d.strip()):
            run = run_baseline(
                bench,
                SEQUENTIAL,
                cap=args.cap,
                messages=args.sequential_messages,
                delay_ms=delay,
                latency_ms=args.latency_ms,
            )
            rows.append(baseline_row(run))
        run = run_baseline(
            bench,
            PROPOSAL,
            cap=args.cap,
            messages=args.messages,
            connections=args.connections,
            latency_ms=args.latency_ms,
        )
        rows.append(baseline_row(run))
    print(markdown_table(RESULT_HEADERS, rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
