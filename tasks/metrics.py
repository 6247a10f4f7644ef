"""Prometheus metrics: counters the code increments in its own process, and figures read from Redis when scraped.

Nothing here makes a call per message: the send loop adds to in-process histograms (`SendHistogram`: a
bucket's count and the sum, under a lock no greenlet waits on), and a chunk counts its outcomes once, when
they are recorded. The queue figures (queue depth, batches in flight, notifications waiting) are read from
Redis by `LiveCollector` only when Prometheus asks, by the API.

No metric has a label that holds a phone number, a token, a wamid or a campaign id: outcomes, error codes
and results are the only labels, so the series stay few and nothing personal leaves the process.

The web API serves them at `/metrics` (with `METRICS_TOKEN`); each worker process on its own HTTP port
(`METRICS_PORT`). Under gunicorn with several workers, set `PROMETHEUS_MULTIPROC_DIR` so the API's
counters are added up across its processes (see gunicorn.conf.py).
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Iterator

from gevent.monkey import get_original
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from tasks.vocabulary import CAMPAIGNS_QUEUE, Outcome, RecipientStatus

log = logging.getLogger("tasks.metrics")

# Send requests answer in tens to hundreds of milliseconds; a timeout is HTTP_TIMEOUT_S (15 s by default).
_REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 20.0)
# A slot is usually due at once or within the chunk's second; a throttled number waits seconds.
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

# The thread module's own lock, even in a worker that gevent has patched.
_allocate_lock = get_original("_thread", "allocate_lock")


class SendHistogram(Collector):
    """A histogram the send loop observes for every message, at a fraction of prometheus_client's cost.

    prometheus_client's Histogram takes a lock for the sum and another for the bucket, and in a worker gevent
    has patched each is a lock written in Python: two observations a message were 4-6 % of a sending worker's
    CPU (py-spy, docs/benchmarks.md). Here one observation is a bisection and two additions under the thread
    module's own lock, which nothing holds across a switch, so no greenlet ever waits on it; a scrape copies
    the counts under the same lock. It reads as a Histogram of the same name and buckets does (without the
    `_created` sample) and, like the worker's other metrics, it counts this process only.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry=REGISTRY):
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is above every bound (+Inf)
        self._sum = 0.0
        self._lock = _allocate_lock()
        if registry is not None:
            registry.register(self)

    def observe(self, amount: float) -> None:
        """Count one observation (in the first bucket whose bound is at least `amount`)."""
        i = bisect_left(self._bounds, amount)
        with self._lock:
            self._counts[i] += 1
            self._sum += amount

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative, buckets = 0, []
        for bound, n in zip((*self._bounds, float("inf")), counts, strict=True):
            cumulative += n
            buckets.append((_bound_label(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


def _bound_label(bound: float) -> str:
    """A bucket's `le` label as Prometheus's clients write it: 0.025, 1.0, +Inf."""
    return "+Inf" if bound == float("inf") else repr(bound)


# --- workers ------------------------------------------------------------------------------------------------

MESSAGES = Counter(
    "wcq_messages",
    "Messages whose chunk recorded an outcome, by outcome (sent, failed, unknown, handed_back, cancelled) and "
    "WhatsApp error code ('network' for a failure without one, empty when there is no error).",
    ["outcome", "error_code"],
)
SEND_SECONDS = SendHistogram(
    "wcq_send_request_seconds",
    "Duration of one Cloud API send request, from sending it to its answer (or its error).",
    buckets=_REQUEST_BUCKETS,
)
RATE_LIMITER_WAIT_SECONDS = SendHistogram(
    "wcq_rate_limiter_wait_seconds",
    "Time a send attempt waited for its slot on the number's shared schedule before its request.",
    buckets=_WAIT_BUCKETS,
)
THROTTLED = Counter(
    "wcq_throttled_answers",
    "Answers asking to slow down (130429 and the other throughput codes), by error code; the message is retried.",
    ["error_code"],
)
WEBHOOK_STATUSES = Counter(
    "wcq_webhook_statuses",
    "Status notifications drained by workers: applied to a recipient, or kept as an orphan for later matching.",
    ["result"],
)
WEBHOOK_BODIES = Counter("wcq_webhook_bodies_drained", "Notification bodies workers took from the inbox and stored.")

# --- web API ------------------------------------------------------------------------------------------------

WEBHOOKS_RECEIVED = Counter(
    "wcq_webhook_notifications_received",
    "Notification requests the API received, by result (accepted, bad_signature, invalid, too_large, unavailable).",
    ["result"],
)
UPLOADS = Counter(
    "wcq_uploads", "Campaign uploads, by result (created, duplicate: same Idempotency-Key, refused).", ["result"]
)
UPLOAD_ROWS = Counter(
    "wcq_upload_rows", "Rows of created campaigns' uploads: accepted as recipients, or rejected.", ["result"]
)


def count_outcomes(outcomes: Iterable[Outcome]) -> None:
    """Add a recorded chunk's outcomes to MESSAGES: one increment per distinct (outcome, code), not per message."""
    tally = Tally(
        (
            "handed_back" if o["status"] == RecipientStatus.PENDING else str(o["status"]),
            _code(o.get("error_code"), o["status"]),
        )
        for o in outcomes
    )
    for (outcome, code), n in tally.items():
        MESSAGES.labels(outcome, code).inc(n)


def _code(code: int | None, status: str) -> str:
    """The error-code label: the code, 'network' for a failure without one, empty otherwise."""
    if code is not None:
        return str(code)
    return "network" if status == RecipientStatus.FAILED else ""


# --- figures read when scraped ------------------------------------------------------------------------------


class LiveCollector(Collector):
    """The queue as Redis holds it now: broker depth, active campaigns, batches in flight, notifications waiting.

    Read at scrape time by the API only (every worker would report the same figures); a Redis that does not
    answer shows as wcq_redis_up 0 with no other figure.
    """

    def __init__(self, state, inbox) -> None:
        self.state = state
        self.inbox = inbox

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("wcq_redis_up", "Whether Redis answered this scrape (1) or not (0).")
        try:
            depth = self.state.queue_depth(CAMPAIGNS_QUEUE)
            campaigns = sorted(self.state.active_campaigns())
            in_flight = sum(self.state.in_flight(c) for c in campaigns)
            waiting = self.inbox.size()
        except Exception as exc:
            log.warning("metrics: Redis did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("wcq_queue_depth", "Tasks waiting in the broker's campaigns queue.", value=depth)
        yield GaugeMetricFamily("wcq_active_campaigns", "Campaigns queued, running or paused.", value=len(campaigns))
        yield GaugeMetricFamily(
            "wcq_batches_in_flight", "Batches dispatched and not finished, all campaigns.", value=in_flight
        )
        yield GaugeMetricFamily(
            "wcq_webhook_inbox_depth", "Verified notification bodies waiting for a worker.", value=waiting
        )


def exposition(live: Collector | None = None) -> bytes:
    """This process's metrics in the text format, added up across processes under PROMETHEUS_MULTIPROC_DIR,
    followed by `live`'s."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if live is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(live)
        text += generate_latest(extra)
    return text


def serve(port: int) -> bool:
    """Serve this process's metrics on `port` (all interfaces) from a background thread; False if it cannot."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port)
    except OSError as exc:
        log.warning("metrics: port %s is not available (%s); this worker's metrics are not served", port, exc)
        return False
    log.info("metrics served on port %s", port)
    return True
