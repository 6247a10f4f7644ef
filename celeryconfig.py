"""Celery settings: fixed ones as module values, and `from_settings` for those that follow the environment."""

from kombu import Queue

from tasks.config import Settings
from tasks.queue import PROCESS_WEBHOOKS, START_DUE, SWEEP
from tasks.vocabulary import CAMPAIGNS_QUEUE, WEBHOOKS_QUEUE

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# Acknowledge after the task ran, so a dead worker's chunk is redelivered; the store's per-message
# claim makes that redelivery harmless.
task_acks_late = True
task_reject_on_worker_lost = True
# With -P gevent -c N a worker reserves multiplier x N messages; 1 keeps messages out of idle buffers.
worker_prefetch_multiplier = 1
# Redelivery of an unacknowledged message waits this long; a chunk finishes in seconds.
_visibility = {"visibility_timeout": 300}
broker_transport_options = _visibility
result_backend_transport_options = _visibility
result_expires = 3600
# Result writes (and so chord joins) ride out a short Redis restart instead of losing a chunk's outcomes.
result_backend_always_retry = True
result_backend_max_retries = 20
# Celery keeps one result backend per thread unless told it is thread-safe; under gevent every greenlet
# counts as a thread, so each task built its own backend, Redis connection pool and connection, and kept
# them: the worker grew by ~1 MB per 3,000 messages and spent CPU connecting. The Redis backend's pool is
# safe to share, so one backend serves the whole process.
result_backend_thread_safe = True
broker_connection_retry_on_startup = True

task_default_queue = CAMPAIGNS_QUEUE
# A worker consumes both queues unless started with -Q; the drains go to their own.
task_queues = (Queue(CAMPAIGNS_QUEUE), Queue(WEBHOOKS_QUEUE))
task_routes = {PROCESS_WEBHOOKS: {"queue": WEBHOOKS_QUEUE}}
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = True
worker_redirect_stdouts = False
# Beat writes its schedule file after every task it sends (every few seconds: the webhook drain runs
# every 5 s) instead of every 3 minutes, so the file's age tells a health check that beat is ticking.
beat_sync_every = 1


def from_settings(settings: Settings) -> dict:
    """The settings read from the environment: the Redis broker and backend, and beat's schedule."""
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        # The sweeper repairs what crashes leave behind (see tasks/recovery.py); run `celery -A tasks beat`.
        "beat_schedule": {
            "sweep": {
                "task": SWEEP,
                "schedule": settings.sweep_interval_s,
                "options": {"expires": settings.sweep_interval_s},
            },
            # Drains status notifications even if the API could not schedule it (and rematches orphans).
            "webhooks": {"task": PROCESS_WEBHOOKS, "schedule": 5.0, "options": {"expires": 5.0}},
            # Starts scheduled campaigns at their time and waiting ones when they may send again; two beats
            # by mistake start each once (the store's transition is conditional, see wake_campaign).
            "start_due": {
                "task": START_DUE,
                "schedule": settings.scheduler_interval_s,
                "options": {"expires": settings.scheduler_interval_s},
            },
        },
    }
