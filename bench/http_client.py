"""The send path's HTTP client against the one it replaced: CPU per request, the same requests, one sandbox.

``python -m bench.http_client`` starts the sandbox (20 ms latency, no cap) and sends the same template
messages from this process, 200 at a time on gevent, through (a) `tasks.whatsapp.WhatsAppClient`
(`tasks/keepalive.py`), (b) geventhttpclient's pooled client as the send path used it in the seventh round
and (c) urllib3's pool as it used it before (requests' adapter, the body encoded once, no retries),
alternately for ``--rounds`` rounds. It prints this process's CPU per request (JSON
encoding and answer parsing included, the same in both), the rate and the answers that were not a wamid.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402  (after the patch, as in a worker)
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import gevent.pool  # noqa: E402
import requests  # noqa: E402
from geventhttpclient import URL, HTTPClient  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402
from urllib3 import Timeout  # noqa: E402

from bench.harness import markdown_table, print_machine_info, run_cli  # noqa: E402
from sandbox.process import start_sandbox  # noqa: E402
from tasks.store.base import Sender  # noqa: E402
from tasks.whatsapp import SendResult, WhatsAppClient, _parse, template_payload  # noqa: E402

SENDER = Sender(buzon="bench", phone_number_id="100000000009001", access_token="bench-token", messages_per_second=None)


class GeventHttpClient:
    """The send path before `tasks/keepalive.py`: geventhttpclient's pooled client (llhttp parser)."""

    def __init__(self, base_url: str, version: str, timeout_s: float, pool_size: int = 1024):
        url = URL(base_url)
        self._prefix = f"{url.path.rstrip('/')}/{version}/"
        self._http = HTTPClient.from_url(
            url, concurrency=pool_size, connection_timeout=min(5.0, timeout_s), network_timeout=timeout_s
        )

    def send(self, sender: Sender, payload: dict) -> SendResult:
        """POST one message and read the answer."""
        path = f"{self._prefix}{sender.phone_number_id}/messages"
        headers = {"Authorization": f"Bearer {sender.access_token}", "Content-Type": "application/json"}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        response = self._http.request("POST", path, body, headers)
        return _parse(response.status_code, response.read())

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()


class Urllib3Client:
    """The send path as it was: a requests Session's adapter, its urllib3 pool called directly."""

    def __init__(self, base_url: str, version: str, timeout_s: float, pool_size: int = 512):
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._timeout = Timeout(connect=min(5.0, timeout_s), read=timeout_s)
        self._session = requests.Session()
        self._session.trust_env = False
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, pool_block=False, max_retries=0)
        self._session.mount("http://", adapter)
        self._pool = adapter.poolmanager

    def send(self, sender: Sender, payload: dict) -> SendResult:
        """POST one message and read the answer."""
        url = f"{self._base}/{sender.phone_number_id}/messages"
        headers = {"Authorization": f"Bearer {sender.access_token}", "Content-Type": "application/json"}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        response = self._pool.urlopen(
            "POST", url, body=body, headers=headers, timeout=self._timeout, retries=False, redirect=False
        )
        return _parse(response.status, response.data)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


def one_round(client, payloads: list[dict], concurrency: int) -> tuple[float, float, int]:
    """(CPU ms per request, requests/s, answers without a wamid) of sending every payload once."""
    client.send(SENDER, payloads[0])  # the first connection is not part of the figure
    pool = gevent.pool.Pool(concurrency)
    cpu, wall = time.process_time(), time.perf_counter()
    results = pool.map(lambda p: client.send(SENDER, p), payloads)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return 1000 * cpu / len(payloads), len(payloads) / wall, sum(1 for r in results if not r.ok)


def main(argv: list[str] | None) -> int:
    """Run the rounds and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    print_machine_info()
    sandbox = start_sandbox(
        tokens={SENDER.phone_number_id: SENDER.access_token},
        mps={SENDER.phone_number_id: 10**6},
        latency_min_ms=20,
        latency_max_ms=20,
    )
    payloads = [template_payload(f"58414{i:07d}", "promo_enero", "es", ["Ana", str(i)]) for i in range(args.requests)]
    clients = {
        "tasks/keepalive.py (the send path now)": lambda: WhatsAppClient(sandbox.url, "v21.0", 10.0),
        "geventhttpclient (seventh round)": lambda: GeventHttpClient(sandbox.url, "v21.0", 10.0),
        "urllib3 pool (sixth round)": lambda: Urllib3Client(sandbox.url, "v21.0", 10.0),
    }
    figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in clients}
    try:
        for _ in range(args.rounds):
            for name, make in clients.items():
                client = make()
                try:
                    figures[name].append(one_round(client, payloads, args.concurrency))
                finally:
                    client.close()
    finally:
        sandbox.stop()
    rows = []
    for name, runs in figures.items():
        rows.append(
            [
                name,
                " / ".join(f"{cpu:.3f}" for cpu, _, _ in runs),
                f"{statistics.median(cpu for cpu, _, _ in runs):.3f}",
                f"{statistics.median(rate for _, rate, _ in runs):.0f}",
                sum(bad for _, _, bad in runs),
            ]
        )
    print(
        markdown_table(
            ["client", "CPU ms/request, each round", "median", "requests/s (median)", "answers without a wamid"], rows
        )
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
