"""How many send requests per second the WhatsApp sandbox sustains while applying latency.

``python -m bench.sandbox_load`` starts the sandbox with 50-300 ms latency and no effective cap, then
drives ``POST /{version}/{phone_number_id}/messages`` with wrk (Debian package ``wrk``) for the given
duration and prints requests/s, latency percentiles and non-2xx answers. The sandbox must never be the
bottleneck of the other benchmarks, which need about 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.harness import markdown_table, print_machine_info, run_cli
from sandbox.process import start_sandbox

PNID = "100000000000777"
TOKEN = "load-token"

_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def main(argv: list[str] | None = None) -> int:
    """Load the sandbox with wrk and print what it sustained."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.sandbox_load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (default 10)")
    parser.add_argument("--connections", type=int, default=1000, help="open connections (default 1000)")
    parser.add_argument("--latency-ms", default="50-300", help="sandbox latency range (default 50-300)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    low, _, high = args.latency_ms.partition("-")
    body = json.dumps(
        {
            "messaging_product": "whatsapp",
            "to": "584141234567",
            "type": "template",
            "template": {"name": "promo", "language": {"code": "es"}},
        }
    )
    print_machine_info()
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_sandbox(
            latency_min_ms=float(low), latency_max_ms=float(high or low), tokens={PNID: TOKEN}, mps={PNID: 10_000_000}
        ) as sandbox,
    ):
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA % (body, TOKEN))
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.duration}s",
                "--timeout",
                "5s",
                "--latency",
                "-s",
                str(script),
                sandbox.message_url(PNID),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        stats = sandbox.stats()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print()
    print(
        markdown_table(
            (
                "latency ms",
                "connections",
                "seconds",
                "requests/s",
                "p50",
                "p90",
                "p99",
                "non-2xx",
                "accepted by sandbox",
            ),
            [
                [
                    args.latency_ms,
                    str(args.connections),
                    str(args.duration),
                    rps,
                    pct.get("50", "?"),
                    pct.get("90", "?"),
                    pct.get("99", "?"),
                    non2xx.group(1) if non2xx else "0",
                    str(stats["accepted"]),
                ]
            ],
        )
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
