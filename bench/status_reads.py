"""Latency of GET /api/estado-cola/<id> at a steady 500 requests/s while a campaign is sending.

``python -m bench.status_reads`` starts the workers and the API (gunicorn, one gevent worker), starts a campaign
at the 80/s cap, then loads the status route for 20 s and prints p50/p90/p99. The default load generator is
open-loop (each request has a scheduled start, and latency counts from it, so a stalled server cannot hide its
queue); ``--tool wrk`` paces wrk with a small Lua script instead, as a cross-check from a C client.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    DEFAULT_LATENCY_MS,
    Bench,
    BenchError,
    CpuMeter,
    ServiceOptions,
    contacts_csv,
    markdown_table,
    percentile,
    print_machine_info,
    run_cli,
    sandbox_delivery,
)


@dataclass
class LoadResult:
    """What a load run measured: latencies in seconds, errors by kind, and the rate really offered."""

    tool: str
    requested: int
    duration_s: float
    latencies: list[float] = field(default_factory=list)
    percentiles: dict[str, float] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    generator_cpu_s: float = 0.0

    @property
    def achieved_rps(self) -> float:
        """Answered requests per second over the run."""
        return len(self.latencies) / self.duration_s if self.duration_s else 0.0

    def percentile(self, p: float) -> float:
        """The p-th percentile latency in seconds (nearest rank), from the samples or from the tool's report."""
        key = f"{p:g}"
        if key in self.percentiles:
            return self.percentiles[key]
        return percentile(self.latencies, p)


def _own_cpu_s() -> float:
    """CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu_s() -> float:
    """CPU time of this process's finished children (wrk) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _paced_load(
    url: str, rate: float, duration_s: float, connections: int, headers: dict[str, str]
) -> LoadResult:
    """Open-loop GETs at a fixed rate; latency is measured from each request's scheduled start."""
    import aiohttp

    total = int(rate * duration_s)
    result = LoadResult("open-loop aiohttp", total, duration_s)
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections), timeout=timeout, headers=headers
    ) as session:

        async def one(scheduled: float) -> None:
            """One GET; success latency is recorded, anything else counted as an error."""
            try:
                async with session.get(url) as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                result.errors[type(exc).__name__] += 1
                return
            if status != 200:
                result.errors[f"HTTP {status}"] += 1
                return
            result.latencies.append(loop.time() - scheduled)

        # Warm the pool so the first requests do not pay for connecting.
        await asyncio.gather(*(one(loop.time()) for _ in range(min(connections, 20))))
        result.latencies.clear()
        result.errors.clear()
        start = loop.time() + 0.05
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            pause = scheduled - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        result.duration_s = loop.time() - start
    return result


def paced_load(
    url: str, rate: float, duration_s: float, connections: int = 64, headers: dict[str, str] | None = None
) -> LoadResult:
    """Run the open-loop generator to completion; `headers` go with every request (the API key)."""
    return asyncio.run(_paced_load(url, rate, duration_s, connections, headers or {}))


_WRK_SCRIPT = """
-- Each wrk thread hands out send slots {interval_ms} ms apart; a connection waits for its slot, so the
-- offered rate stays at the target as long as a connection is free (wrk still times from the real send).
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local next_slot = 0
function delay()
  local now = now_ms()
  if next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + {interval_ms}
  return math.floor(wait)
end
"""
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_WRK_THREADS = 2


def wrk_load(
    url: str, rate: float, duration_s: float, connections: int = 32, headers: dict[str, str] | None = None
) -> LoadResult:
    """Load with wrk, paced by a Lua script that spaces each thread's requests evenly; `headers` on every request."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    interval_ms = 1000 * _WRK_THREADS / rate
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT.format(interval_ms=f"{interval_ms:.4f}"))
    try:
        completed = subprocess.run(
            [
                wrk,
                f"-t{_WRK_THREADS}",
                f"-c{connections}",
                f"-d{int(duration_s)}s",
                "--latency",
                "-s",
                script.name,
                *(arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    output = completed.stdout
    if completed.returncode != 0:
        raise BenchError(f"wrk failed:\n{output}\n{completed.stderr}")
    result = LoadResult(f"wrk (Lua-paced), {connections} conns", int(rate * duration_s), duration_s)
    for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M):
        result.percentiles[percent] = float(value) * _UNITS[unit]
    requests = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if requests:
        # Only the count matters for the rate: latencies come from wrk's own percentiles.
        result.latencies = [0.0] * int(requests.group(1))
        result.duration_s = float(requests.group(2)) * _UNITS[requests.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        result.errors["non-2xx"] = int(non_2xx.group(1))
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        result.errors["socket"] = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return result


def main(argv: list[str] | None = None) -> int:
    """Start a campaign, load the status route at the given rate, print the latency table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.status_reads", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s (default 500)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    parser.add_argument("--cap", type=float, default=80.0, help="sandbox cap of the sending campaign (default 80)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes sending it (default 2)")
    parser.add_argument(
        "--tool",
        choices=("aiohttp", "wrk", "both"),
        default="aiohttp",
        help="load generator (default: the open-loop aiohttp one)",
    )
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="sandbox latency (default 100)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service logs and say where")
    args = parser.parse_args(argv)
    tools = ("aiohttp", "wrk") if args.tool == "both" else (args.tool,)
    # Enough messages that the campaign is still sending when the last load run ends.
    messages = min(100_000, int(args.cap * (len(tools) * (args.duration + 5) + 20)))

    print_machine_info()
    results: list[tuple[LoadResult, float, float]] = []
    with Bench(keep_logs=args.keep_logs) as bench:
        sandbox = bench.start_sandbox(args.cap, args.latency_ms)
        bench.register_buzon(int(args.cap))
        env = bench.service_env(ServiceOptions())
        workers = bench.start_workers(args.workers, env)
        api = bench.start_api(env)
        _, created = api.create_campaign(contacts_csv(messages), f"status reads {time.time_ns()}")
        campaign_id = created["campaign_id"]
        deadline = time.monotonic() + 60
        while api.status(campaign_id)["sent"] == 0:
            for worker in workers:
                worker.check()
            if time.monotonic() > deadline:
                raise BenchError("the campaign sent nothing within 60 s")
            time.sleep(0.5)
        time.sleep(2.0)
        url = f"{api.url}/api/estado-cola/{campaign_id}"
        api_pid = api.worker_pid()
        for tool in tools:
            api_cpu = CpuMeter(lambda: [api_pid] if api_pid else [])
            before = api.status(campaign_id)["sent"]
            api_cpu.start()
            bench.say(f"loading {url} at {args.rate:g}/s for {args.duration:g} s with {tool}")
            # The generator shares the machine with the server, so its own CPU time is reported alongside.
            own_before, children_before = _own_cpu_s(), _children_cpu_s()
            if tool == "wrk":
                load = wrk_load(url, args.rate, args.duration, headers=api.auth_headers)
            else:
                load = paced_load(url, args.rate, args.duration, headers=api.auth_headers)
            load.generator_cpu_s = _own_cpu_s() - own_before + _children_cpu_s() - children_before
            cpu_s = api_cpu.stop()
            state = api.status(campaign_id)
            if state["status"] != "running":
                bench.say(f"warning: the campaign was {state['status']} by the end of the load")
            results.append((load, cpu_s, (state["sent"] - before) / load.duration_s))
        api.cancel(campaign_id)
        delivery = sandbox_delivery(sandbox)
    rows = []
    for load, cpu_s, send_rate in results:
        ms = [f"{1000 * load.percentile(p):.1f}" for p in (50, 90, 99)]
        answered = max(1, len(load.latencies))
        rows.append(
            [
                load.tool,
                f"{args.rate:g}",
                f"{load.achieved_rps:.0f}",
                *ms,
                f"{1000 * max(load.latencies, default=math.nan):.1f}" if load.tool.startswith("open") else "–",
                str(sum(load.errors.values())),
                f"{1000 * cpu_s / answered:.2f}",
                f"{100 * load.generator_cpu_s / load.duration_s:.0f}",
                f"{send_rate:.1f}",
            ]
        )
    print()
    print(
        markdown_table(
            (
                "load generator",
                "target rps",
                "achieved rps",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "errors",
                "web CPU ms/req",
                "generator CPU %",
                "campaign msg/s meanwhile",
            ),
            rows,
        )
    )
    print(
        f"campaign at the {args.cap:g}/s cap with {args.workers} worker(s); the sandbox saw "
        f"{delivery.accepted} messages, {delivery.rate_limited} answered 130429"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
