"""How work reaches the workers: the task names, and the Celery implementation of the queue.

The pipeline only knows `TaskQueue`; the tasks themselves live in `tasks.jobs` and are addressed by name,
so a producer (the web API) needs no task code to enqueue them.
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery, chord

SEND_CHUNK = "campaigns.send_chunk"
SEND_BATCH = "campaigns.send_batch"
FINISH_BATCH = "campaigns.finish_batch"
SWEEP = "campaigns.sweep"
START_DUE = "campaigns.start_due"
PROCESS_WEBHOOKS = "webhooks.process"


class TaskQueue(Protocol):
    """Sends batches and webhook drains to the workers."""

    def enqueue_batch(self, campaign_id: str, batch_no: int, chunks: int) -> None:
        """Send one batch: `chunks` chunk tasks, joined by the batch callback."""

    def schedule_webhooks(self) -> None:
        """Ask a worker to drain the notification inbox soon."""


class CeleryQueue:
    """A batch is one chord on the Redis broker: `send_chunk` × chunks, then `finish_batch`; a batch of one
    chunk is one `send_batch` task, which finishes the batch itself."""

    def __init__(self, app: Celery):
        self.app = app

    def enqueue_batch(self, campaign_id: str, batch_no: int, chunks: int) -> None:
        """Send the chord; task arguments are ids only (no phone numbers, no tokens).

        With one chunk (BATCH_SIZE = CHUNK_SIZE, the default) a chord would only add cost: the chunk's
        result stored and counted in Redis, and a second task to publish, run and report. A redelivered
        `send_batch` claims nothing already settled and finishes the batch as the callback would.
        """
        if chunks == 1:
            self.app.send_task(SEND_BATCH, args=(campaign_id, batch_no))
            return
        header = [self.app.signature(SEND_CHUNK, args=(campaign_id, batch_no, chunk_no)) for chunk_no in range(chunks)]
        chord(header, app=self.app)(self.app.signature(FINISH_BATCH, args=(campaign_id, batch_no)))

    def schedule_webhooks(self) -> None:
        """One drain task, a moment from now, so a burst of notifications is applied together."""
        self.app.send_task(PROCESS_WEBHOOKS, countdown=0.2)
