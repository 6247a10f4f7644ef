"""A task queue that runs batches in the test's own process, when the test says so.

It keeps the chord's contract (every chunk of a batch sends, then the callback records them all) so an
in-process test walks a campaign through the real pipeline, sender, store, Redis and sandbox step by step,
and can stop between any two steps to play a crash.
"""

from __future__ import annotations

import uuid
from collections import deque

from tasks.runtime import Runtime
from tasks.vocabulary import Outcome


class InlineQueue:
    """Batches wait here until `run_next` or `run_all` sends them in this process."""

    def __init__(self) -> None:
        self.batches: deque[tuple[str, int, list[str]]] = deque()
        self.results: dict[str, list[Outcome]] = {}
        self.webhook_drains = 0

    def new_task_ids(self, count: int) -> list[str]:
        """Fresh ids, one per chunk."""
        return [uuid.uuid4().hex for _ in range(count)]

    def enqueue_batch(self, campaign_id: str, batch_no: int, task_ids: list[str]) -> None:
        """Keep the batch for later."""
        self.batches.append((campaign_id, batch_no, task_ids))

    def finished_results(self, task_ids: list[str]) -> list[list[Outcome]]:
        """What the chunks that ran returned."""
        return [self.results[t] for t in task_ids if t in self.results]

    def schedule_webhooks(self) -> None:
        """Count the drains asked for (the test runs the applier itself)."""
        self.webhook_drains += 1

    def send_chunks(self, rt: Runtime, owner: str | None = None) -> tuple[str, int, list[str]]:
        """Take the next batch and send its chunks, but do not record them (as if the callback never ran)."""
        campaign_id, batch_no, task_ids = self.batches.popleft()
        for chunk_no, task_id in enumerate(task_ids):
            self.results[task_id] = rt.sender.send_chunk(campaign_id, batch_no, chunk_no, owner or rt.owner)
        return campaign_id, batch_no, task_ids

    def run_next(self, rt: Runtime) -> None:
        """Send the next batch and run its callback, as the chord does."""
        campaign_id, batch_no, task_ids = self.send_chunks(rt)
        rt.pipeline.finish_batch(campaign_id, batch_no, self.finished_results(task_ids))

    def run_all(self, rt: Runtime, limit: int = 1000) -> int:
        """Run batches until none is queued; returns how many ran."""
        ran = 0
        while self.batches and ran < limit:
            self.run_next(rt)
            ran += 1
        return ran
