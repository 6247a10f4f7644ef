"""What a batch of status notifications costs PostgreSQL, by batch size and by the recipients table's room.

``python -m bench.status_batches`` stores a campaign of ``--messages`` recipients as an upload does, claims and
records them as sent (``claim_messages`` and ``record_outcomes``, in chunks of 100, as the workers do), then
applies sent, delivered and read for every message through ``apply_statuses`` (the webhook drain's one store
call), in the order WhatsApp's stream brings them (each status 50–500 ms after the one before, messages 1 ms
apart), in batches of each ``--batch`` size. It prints, per variant, the CPU of the bench database's backends per
status (and per recorded outcome), how many of the table's updates were HOT (no index entries written), the WAL
written per status and the table's size. The pages and the WAL repeat from run to run, the HOT share within a
few points; the CPU figures move with what else the machine's host is doing (±25 % here), so compare them only within a
round, and run two (``--rounds``).

``--fillfactor`` lists the recipients table's fillfactors to compare (the migrations set 70; PostgreSQL's
default is 100).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import psycopg

from bench.harness import Bench, CpuMeter, markdown_table, print_machine_info, run_cli, store_recipients
from tasks.store.postgres import PostgresStore

CHUNK = 100
STREAM_MPS = 1000.0  # messages a second in the simulated stream (the cap)


def stream(wamids: list[str], seed: int = 7) -> list[dict]:
    """sent, delivered and read of every message, as apply_statuses takes them, in the order they arrive."""
    rng = random.Random(seed)
    timed = []
    for i, wamid in enumerate(wamids):
        at = i / STREAM_MPS
        for status in ("sent", "delivered", "read"):
            at += rng.uniform(0.05, 0.5)
            timed.append((at, {"wamid": wamid, "status": status, "ts": 1_798_000_000 + int(at), "callback": None}))
    timed.sort(key=lambda pair: pair[0])
    return [status for _, status in timed]


def table_figures(conn: psycopg.Connection) -> tuple[int, int, int]:
    """(updates, HOT updates, pages) of the recipients table so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size(relid) / 8192 FROM pg_stat_user_tables"
        " WHERE schemaname = 'instancia_sofia' AND relname = 'leads_activos'"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def wal_bytes(conn: psycopg.Connection) -> int:
    """WAL position in bytes."""
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def run_variant(bench: Bench, messages: int, batch: int, fillfactor: int) -> list:
    """One campaign stored, sent and notified with this batch size and fillfactor; returns the table row."""
    bench.reset_state()
    bench.register_buzon(int(STREAM_MPS))
    with psycopg.connect(bench.dsn, autocommit=True) as admin:
        admin.execute(f"ALTER TABLE instancia_sofia.leads_activos SET (fillfactor = {int(fillfactor)})")
        admin.execute("VACUUM instancia_sofia.leads_activos")
    store = PostgresStore(bench.dsn, max_size=1)
    try:
        campaign_id = f"lotes-{batch}-{fillfactor}"
        store_recipients(store, campaign_id, messages, CHUNK)
        recording, applying = CpuMeter(bench.db_backend_pids), CpuMeter(bench.db_backend_pids)
        with psycopg.connect(bench.dsn, autocommit=True) as stats:
            updates0, hot0, _ = table_figures(stats)
            recording.start()
            wamids = []
            for seq in range(0, messages, CHUNK):
                claimed = store.claim_messages(campaign_id, seq, seq + CHUNK - 1, "bench-worker")
                outcomes = [
                    {"id": m.id, "status": "sent", "wamid": f"wamid.{campaign_id}.{m.seq}", "owner": "bench-worker"}
                    for m in claimed
                ]
                store.record_outcomes(outcomes)
                wamids.extend(o["wamid"] for o in outcomes)
            recorded_cpu = recording.stop()
            updates1, hot1, _ = table_figures(stats)
            statuses = stream(wamids)
            wal1, wall1 = wal_bytes(stats), time.perf_counter()
            applying.start()
            applied = 0
            for start in range(0, len(statuses), batch):
                applied += store.apply_statuses(statuses[start : start + batch])["applied"]
            applied_cpu = applying.stop()
            wal2, wall2 = wal_bytes(stats), time.perf_counter()
            updates, hot, pages = table_figures(stats)
    finally:
        store.close()
    if applied != len(statuses):
        raise SystemExit(f"only {applied} of {len(statuses)} statuses applied")
    n = len(statuses)
    return [
        batch,
        fillfactor,
        f"{1e6 * recorded_cpu / messages:.0f}",
        f"{1e6 * applied_cpu / n:.0f}",
        f"{1e6 * (wall2 - wall1) / n:.0f}",
        f"{100 * (hot1 - hot0) / max(1, updates1 - updates0):.0f} %",
        f"{100 * (hot - hot1) / max(1, updates - updates1):.0f} %",
        f"{(wal2 - wal1) / n:.0f}",
        pages,
    ]


def main(argv: list[str] | None = None) -> int:
    """Run each batch size with each fillfactor and print one table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="recipients of each variant's campaign")
    parser.add_argument("--batch", type=int, nargs="+", default=[200, 500, 2000], help="statuses per apply_statuses")
    parser.add_argument("--fillfactor", type=int, nargs="+", default=[100, 70], help="the table's fillfactors")
    parser.add_argument("--rounds", type=int, default=2, help="times each variant runs, interleaved")
    args = parser.parse_args(argv)
    print_machine_info()
    rows = []
    with Bench() as bench:
        for round_no in range(args.rounds):
            for fillfactor in args.fillfactor:
                for batch in args.batch:
                    bench.say(f"round {round_no + 1}: batches of {batch}, fillfactor {fillfactor}")
                    rows.append(run_variant(bench, args.messages, batch, fillfactor))
    print(
        markdown_table(
            [
                "statuses per call",
                "fillfactor",
                "claim + record, µs CPU per message",
                "apply, µs CPU per status",
                "apply, µs wall per status",
                "HOT: claim + record",
                "HOT: statuses",
                "WAL bytes per status",
                "table pages",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
