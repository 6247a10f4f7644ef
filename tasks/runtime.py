"""The composition root: the one place that builds the service's objects from its settings.

`build_runtime(settings, queue)` wires store, Redis, live state, rate limiter, WhatsApp client, sender,
pipeline, sweeper and webhook applier, and hands each only what it uses. The web app calls it once in
`create_app` (kept on `app.extensions`); a worker calls it once at process start (`tasks.worker`). How
batches reach workers is the `queue` argument: Celery in production (`tasks.queue.CeleryQueue`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tasks.account_signals import AccountSignals
from tasks.config import Settings
from tasks.heartbeat import new_owner_id
from tasks.optouts import OptOutPolicy
from tasks.pipeline import Pipeline, PipelinePolicy
from tasks.portfolio import MessagingBudget
from tasks.queue import TaskQueue
from tasks.ratelimit import SendRateLimiter
from tasks.recovery import Sweeper
from tasks.sending import ChunkSender, SendPolicy
from tasks.state import LiveState
from tasks.store import Store, open_store
from tasks.webhooks import WebhookApplier, WebhookInbox
from tasks.whatsapp import WhatsAppClient


@dataclass(frozen=True)
class Runtime:
    """Everything one process of the service uses, built once."""

    settings: Settings
    owner: str  # this process's id on the claims it makes
    redis: redis.Redis
    probe: redis.Redis  # the same Redis without retries, for health answers that must not wait it out
    store: Store
    state: LiveState
    queue: TaskQueue
    pipeline: Pipeline
    sender: ChunkSender
    sweeper: Sweeper
    inbox: WebhookInbox
    webhooks: WebhookApplier
    budget: MessagingBudget  # the portfolios' daily limits, shared by every worker

    def close(self) -> None:
        """Release connections (tests and CLI commands that build a runtime of their own)."""
        self.sender.client.close()
        self.store.close()
        self.redis.close()
        self.probe.close()


def redis_client(url: str) -> redis.Redis:
    """A pooled Redis client with timeouts, since the gevent pool has no task time limits."""
    # Retries ride out a Redis restart of a few seconds instead of failing every task in flight.
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=12)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        max_connections=1000,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def probe_client(url: str) -> redis.Redis:
    """A Redis client that gives up within a second: health checks report an outage, they do not ride it out."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1, retry=None)


def build_runtime(
    settings: Settings, queue: TaskQueue, *, store: Store | None = None, store_wait_s: float | None = None
) -> Runtime:
    """Build a process's runtime; `queue` says how batches and webhook drains reach the workers.

    `store_wait_s` is how long a store call waits for a database that is away: DATABASE_RETRY_S unless
    given (a worker rides out a restart; the API answers 503 after a moment instead).
    """
    client = redis_client(settings.redis_url)
    store = store or open_store(settings, wait_s=store_wait_s)
    state = LiveState(client)
    owner = new_owner_id()
    pipeline = Pipeline(store, state, queue, PipelinePolicy.from_settings(settings))
    whatsapp = WhatsAppClient(settings.api_whatsapp_url, settings.whatsapp_api_version, settings.http_timeout_s)
    budget = MessagingBudget(client, store, settings.messaging_limit_window_s)
    sender = ChunkSender(
        store, state, pipeline, whatsapp, SendRateLimiter(client), SendPolicy.from_settings(settings), budget
    )
    inbox = WebhookInbox(client)
    sweeper = Sweeper(
        store,
        state,
        pipeline,
        inbox,
        queue.schedule_webhooks,
        owner=owner,
        heartbeat_ttl_s=settings.worker_heartbeat_ttl_s,
        stale_batch_s=settings.stale_batch_s,
        stuck_claim_s=settings.stuck_claim_s,
    )
    return Runtime(
        settings=settings,
        owner=owner,
        redis=client,
        probe=probe_client(settings.redis_url),
        store=store,
        state=state,
        queue=queue,
        pipeline=pipeline,
        sender=sender,
        sweeper=sweeper,
        inbox=inbox,
        webhooks=WebhookApplier(
            store,
            state,
            inbox,
            owner,
            AccountSignals(store, pipeline, settings.pause_on_low_quality),
            schedule=queue.schedule_webhooks,
            optouts=OptOutPolicy.from_settings(settings),
            on_deferred=pipeline.keep_open,
            batch_max=settings.webhook_batch_max,
            gather_s=settings.webhook_gather_ms / 1000,
        ),
        budget=budget,
    )
