"""How work reaches the workers: the task names, and the Celery implementation of the queue.

The pipeline only knows `TaskQueue`; the tasks themselves live in `tasks.jobs` and are addressed by name,
so a producer (the web API) needs no task code to enqueue them.
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery, chord, uuid

from tasks.vocabulary import Outcome

SEND_CHUNK = "campaigns.send_chunk"
FINISH_BATCH = "campaigns.finish_batch"
SWEEP = "campaigns.sweep"
PROCESS_WEBHOOKS = "webhooks.process"


class TaskQueue(Protocol):
    """Sends batches and webhook drains to the workers, and reads the results chunks left behind."""

    def new_task_ids(self, count: int) -> list[str]:
        """Ids for the chunk tasks of a batch, known before it is sent (the sweeper keeps them)."""

    def enqueue_batch(self, campaign_id: str, batch_no: int, task_ids: list[str]) -> None:
        """Send one batch: a chunk task per id, joined by the batch callback."""

    def finished_results(self, task_ids: list[str]) -> list[list[Outcome]]:
        """The outcomes of those chunk tasks that finished; never waits for the others."""

    def schedule_webhooks(self) -> None:
        """Ask a worker to drain the notification inbox soon."""


class CeleryQueue:
    """A batch is one chord on the Redis broker: `send_chunk` × chunks, then `finish_batch`."""

    def __init__(self, app: Celery):
        self.app = app

    def new_task_ids(self, count: int) -> list[str]:
        """Fresh Celery task ids."""
        return [uuid() for _ in range(count)]

    def enqueue_batch(self, campaign_id: str, batch_no: int, task_ids: list[str]) -> None:
        """Send the chord; task arguments are ids only (no phone numbers, no tokens)."""
        header = [
            self.app.signature(SEND_CHUNK, args=(campaign_id, batch_no, chunk_no)).set(task_id=task_id)
            for chunk_no, task_id in enumerate(task_ids)
        ]
        chord(header, app=self.app)(self.app.signature(FINISH_BATCH, args=(campaign_id, batch_no)))

    def finished_results(self, task_ids: list[str]) -> list[list[Outcome]]:
        """Results of the chunk tasks that succeeded."""
        results = []
        for task_id in task_ids:
            result = self.app.AsyncResult(task_id)
            if result.successful():
                results.append(result.result)
        return results

    def schedule_webhooks(self) -> None:
        """One drain task, a moment from now, so a burst of notifications is applied together."""
        self.app.send_task(PROCESS_WEBHOOKS, countdown=0.2)
