"""Results export cost: time and the web process's peak memory for GET /api/campanas/<id>/resultados.csv.

``python -m bench.export`` stores a 100,000-recipient campaign straight into the bench database (most rows
sent with a wamid and delivery times, some failed with an error code, a few unknown), starts the API as
deployed (gunicorn, one gevent worker) and downloads the export once per size and separator, reading the
body as it streams. A smaller campaign (``--small``, 10,000 by default) is exported by the same process
first: if memory stayed flat, both peaks are about the idle size.
"""

from __future__ import annotations

import argparse
import time

import psycopg
import requests

from bench.harness import (
    Bench,
    BenchError,
    CpuMeter,
    RssSampler,
    markdown_table,
    mb,
    print_machine_info,
    run_cli,
    status_kb,
    store_recipients,
)

ROWS = 100_000
SMALL_ROWS = 10_000

# Outcomes spread over the rows by seq: 3 % failed (131026), 2 % unknown, the rest sent; of those, most
# delivered and half read, as a finished campaign looks the next day.
_OUTCOMES = """
UPDATE instancia_sofia.leads_activos SET
    status = CASE WHEN seq %% 100 < 3 THEN 'failed' WHEN seq %% 100 < 5 THEN 'unknown' ELSE 'sent' END,
    attempts = 1 + (seq %% 17 = 0)::int,
    wamid = CASE WHEN seq %% 100 >= 5 THEN 'wamid.HBgLNTg0MTQxMjM0NTY3FQIAERgS' || lpad(seq::text, 12, '0') END,
    error_code = CASE WHEN seq %% 100 < 3 THEN 131026 END,
    error_detail = CASE WHEN seq %% 100 < 3 THEN 'Message undeliverable' WHEN seq %% 100 < 5
                        THEN 'La solicitud se interrumpió (ReadTimeout)' END,
    sent_at = CASE WHEN seq %% 100 >= 5 THEN now() - interval '1 day' + seq * interval '1 ms' END,
    delivery_status = CASE WHEN seq %% 100 >= 5 THEN (CASE WHEN seq %% 2 = 0 THEN 'read' ELSE 'delivered' END) END,
    delivered_at = CASE WHEN seq %% 100 >= 5 THEN now() - interval '1 day' + seq * interval '1 ms' + interval '2 s' END,
    read_at = CASE WHEN seq %% 100 >= 5 AND seq %% 2 = 0 THEN now() - interval '20 hours' END
WHERE campaign_id = %s
"""


def store_campaign(bench: Bench, campaign_id: str, rows: int) -> float:
    """Store a finished campaign of `rows` recipients directly (no API, no sending); returns the seconds it took."""
    from tasks.store.postgres import PostgresStore

    started = time.perf_counter()
    store = PostgresStore(bench.dsn, max_size=1, statement_timeout_s=0)
    try:
        store_recipients(store, campaign_id, rows)
    finally:
        store.close()
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        conn.execute(_OUTCOMES, (campaign_id,))
        conn.execute("UPDATE instancia_sofia.campaigns SET status = 'completed' WHERE id = %s", (campaign_id,))
        conn.execute("VACUUM ANALYZE instancia_sofia.leads_activos")
    return time.perf_counter() - started


def measure_export(bench: Bench, pid: int, campaign_id: str, separator: str) -> dict:
    """Download one export while sampling the web worker; returns time, size, rows and memory."""
    api = bench.api
    assert api is not None
    cpu = CpuMeter(lambda: [pid])
    sampler = RssSampler(lambda: [pid], interval_s=0.05)
    cpu.start()
    sampler.start()
    started = time.perf_counter()
    first_byte_s = None
    size = lines = 0
    try:
        params = {"separador": separator} if separator != "," else {}
        with api.session.get(
            f"{api.url}/api/campanas/{campaign_id}/resultados.csv", params=params, stream=True, timeout=300
        ) as response:
            if response.status_code != 200:
                raise BenchError(f"export answered {response.status_code}: {response.text[:500]}")
            for block in response.iter_content(chunk_size=64 * 1024):
                if first_byte_s is None:
                    first_byte_s = time.perf_counter() - started
                size += len(block)
                lines += block.count(b"\r\n")
    except requests.RequestException as exc:
        raise BenchError(f"export failed: {exc}\n{api.process.log_tail() if api.process else ''}") from exc
    finally:
        sampler.stop()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "first_byte_s": first_byte_s or seconds,
        "bytes": size,
        "rows": lines - 1,  # the header line
        "sampled_peak_kb": sampler.peak_kb,
        "hwm_kb": status_kb(pid, "VmHWM") or 0,
        "cpu_s": cpu.stop(),
    }


def main(argv: list[str] | None = None) -> int:
    """Store the campaigns, export each with each separator, print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=ROWS, help="recipients of the large campaign (default 100000)")
    parser.add_argument("--small", type=int, default=SMALL_ROWS, help="recipients of the small one (default 10000)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the service logs and say where")
    args = parser.parse_args(argv)
    print_machine_info()
    table = []
    with Bench(keep_logs=args.keep_logs) as bench:
        bench.start_sandbox(1.0)
        bench.register_buzon(1)
        sizes = [(f"export-{n}", n) for n in (args.small, args.rows) if n]
        for campaign_id, rows in sizes:
            bench.say(f"storing {rows} recipients in {store_campaign(bench, campaign_id, rows):.1f} s")
        api = bench.start_api(bench.service_env())
        pid = api.worker_pid()
        assert pid is not None
        time.sleep(1.0)  # let the worker settle after its first requests
        idle_kb = status_kb(pid, "VmRSS") or 0
        for campaign_id, rows in sizes:
            for separator in (",", ";"):
                result = measure_export(bench, pid, campaign_id, separator)
                if result["rows"] != rows:
                    raise BenchError(f"{campaign_id}: the export had {result['rows']} rows, not {rows}")
                bench.say(
                    f"{campaign_id} sep {separator}: {result['seconds']:.2f} s, "
                    f"peak RSS {mb(max(result['sampled_peak_kb'], result['hwm_kb']))} MB"
                )
                table.append(
                    [
                        str(rows),
                        separator,
                        f"{result['bytes'] / 1e6:.1f}",
                        f"{result['first_byte_s'] * 1000:.0f}",
                        f"{result['seconds']:.2f}",
                        f"{rows / result['seconds']:,.0f}",
                        f"{result['cpu_s']:.2f}",
                        mb(idle_kb),
                        mb(result["sampled_peak_kb"]),
                        mb(result["hwm_kb"]),
                    ]
                )
    print()
    print(
        markdown_table(
            (
                "recipients",
                "separator",
                "size MB",
                "first byte ms",
                "total s",
                "rows/s",
                "web CPU s",
                "web idle RSS MB",
                "web peak RSS MB (sampled)",
                "web VmHWM MB (cumulative)",
            ),
            table,
        )
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
