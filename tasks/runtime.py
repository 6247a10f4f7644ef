"""The objects one process needs (settings, store, Redis, sender), built once on first use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tasks.config import Settings, load_settings
from tasks.pipeline import Pipeline
from tasks.ratelimit import SendRateLimiter
from tasks.sending import ChunkSender
from tasks.state import LiveState
from tasks.store import Store, open_store
from tasks.whatsapp import WhatsAppClient


@dataclass
class Runtime:
    """Lazily built collaborators of the pipeline; `enqueue_batch` decides how batches reach workers."""

    settings: Settings

    @cached_property
    def redis(self) -> redis.Redis:
        """A pooled Redis client with timeouts, since the gevent pool has no task time limits."""
        # Retries ride out a Redis restart of a few seconds instead of failing every task in flight.
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=12)
        return redis.Redis.from_url(self.settings.redis_url, decode_responses=True, socket_timeout=10,
                                    socket_connect_timeout=5, health_check_interval=30, max_connections=1000,
                                    retry=retry, retry_on_error=[redis.ConnectionError, redis.TimeoutError])

    @cached_property
    def store(self) -> Store:
        """The configured store."""
        return open_store(self.settings)

    @cached_property
    def state(self) -> LiveState:
        """Live campaign state in Redis."""
        return LiveState(self.redis)

    @cached_property
    def pipeline(self) -> Pipeline:
        """Campaign control, sending batches as Celery chords."""
        from tasks.jobs import enqueue_batch

        s = self.settings
        return Pipeline(self.store, self.state, enqueue_batch, s.max_concurrent_batches, default_mps=s.whatsapp_mps,
                        max_error_rate=s.max_error_rate, error_rate_window=s.error_rate_window)

    @cached_property
    def sender(self) -> ChunkSender:
        """The chunk sender with its WhatsApp client and shared rate limiter."""
        s = self.settings
        client = WhatsAppClient(s.api_whatsapp_url, s.whatsapp_api_version, s.http_timeout_s)
        return ChunkSender(self.pipeline, client, SendRateLimiter(self.redis), default_mps=s.whatsapp_mps,
                           interval_ms=s.intervalo_envio_ms, max_retries=s.max_retries,
                           credentials_ttl_s=s.credentials_cache_s, chunk_deadline_s=s.chunk_deadline_s)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime, created from the environment the first time it is needed."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime built elsewhere (the web app builds its own from its config)."""
    global _runtime
    with _lock:
        _runtime = runtime
