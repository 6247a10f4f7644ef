"""gunicorn's settings file, read from the working directory (the image's /app): Prometheus multiprocess mode.

With PROMETHEUS_MULTIPROC_DIR set, each gunicorn worker writes its counters to files there and GET /metrics
adds up every worker's (tasks.metrics.exposition). The directory is emptied of the previous run's files
when gunicorn starts, and a worker's files are marked dead when it exits. Without the variable nothing
here does anything. The command line's options (-k, -w, -b) stay in docker-compose.yml.
"""

import os
from pathlib import Path


def on_starting(server):
    """Start from an empty metrics directory: counters of a previous run's processes must not add up."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server, worker):
    """Drop the live gauges of a worker that exited (its counters stay, as Prometheus expects)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
