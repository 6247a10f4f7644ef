"""A task queue that runs batches in the test's own process, when the test says so.

It keeps the chord's contract (every chunk of a batch sends and records its outcomes, then the callback
requeues or dispatches) so an in-process test walks a campaign through the real pipeline, sender, store,
Redis and sandbox step by step, and can stop between any two steps to play a crash.
"""

from __future__ import annotations

from collections import deque

from tasks.runtime import Runtime
from tasks.vocabulary import ChunkReport, Outcome


class InlineQueue:
    """Batches wait here until `run_next` or `run_all` sends them in this process."""

    def __init__(self) -> None:
        self.batches: deque[tuple[str, int, int]] = deque()
        self.webhook_drains = 0

    def enqueue_batch(self, campaign_id: str, batch_no: int, chunks: int) -> None:
        """Keep the batch for later."""
        self.batches.append((campaign_id, batch_no, chunks))

    def schedule_webhooks(self) -> None:
        """Count the drains asked for (the test runs the applier itself)."""
        self.webhook_drains += 1

    def send_chunks(self, rt: Runtime, owner: str | None = None) -> tuple[str, int, list[ChunkReport]]:
        """Take the next batch and send and record its chunks, but do not run its callback."""
        campaign_id, batch_no, chunks = self.batches.popleft()
        reports = [
            rt.sender.send_chunk(campaign_id, batch_no, chunk_no, owner or rt.owner) for chunk_no in range(chunks)
        ]
        return campaign_id, batch_no, reports

    def send_unrecorded(self, rt: Runtime, owner: str | None = None) -> tuple[str, int, list[Outcome]]:
        """Take the next batch and send its chunks, as a worker that dies before recording them."""
        campaign_id, batch_no, chunks = self.batches.popleft()
        outcomes = []
        for chunk_no in range(chunks):
            outcomes += rt.sender.send(campaign_id, batch_no, chunk_no, owner or rt.owner)
        return campaign_id, batch_no, outcomes

    def run_next(self, rt: Runtime) -> None:
        """Send the next batch and run its callback, as the chord does."""
        campaign_id, batch_no, reports = self.send_chunks(rt)
        rt.pipeline.finish_batch(campaign_id, batch_no, reports)

    def run_all(self, rt: Runtime, limit: int = 1000) -> int:
        """Run batches until none is queued; returns how many ran."""
        ran = 0
        while self.batches and ran < limit:
            self.run_next(rt)
            ran += 1
        return ran
