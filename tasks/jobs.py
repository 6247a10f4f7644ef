"""Celery tasks: thin adapters that unpack ids and call the plain code of this process's runtime."""

from __future__ import annotations

from celery import shared_task

from tasks import queue
from tasks.vocabulary import ChunkReport
from tasks.worker import runtime


@shared_task(name=queue.SEND_CHUNK, acks_late=True, ignore_result=False)
def send_chunk(campaign_id: str, batch_no: int, chunk_no: int) -> ChunkReport:
    """Send one chunk of a batch and record its outcomes; returns how many it handed back."""
    rt = runtime()
    return rt.sender.send_chunk(campaign_id, batch_no, chunk_no, rt.owner)


@shared_task(name=queue.SEND_BATCH, acks_late=True, ignore_result=True)
def send_batch(campaign_id: str, batch_no: int) -> ChunkReport:
    """Send a batch of one chunk, record its outcomes and finish the batch (no chord to join)."""
    rt = runtime()
    report = rt.sender.send_chunk(campaign_id, batch_no, 0, rt.owner)
    rt.pipeline.finish_batch(campaign_id, batch_no, [report])
    return report  # not stored; Flower and the worker's activity figures read it from the task's end


@shared_task(name=queue.FINISH_BATCH, acks_late=True, ignore_result=True)
def finish_batch(reports: list[ChunkReport], campaign_id: str, batch_no: int) -> None:
    """Chord callback: requeue the batch if it handed messages back, then complete or dispatch more."""
    runtime().pipeline.finish_batch(campaign_id, batch_no, reports)


@shared_task(name=queue.SWEEP, ignore_result=True)
def sweep() -> dict:
    """Periodic repair (celery beat): dead workers' claims, stale batches, campaigns nobody moves."""
    return runtime().sweeper.guarded_sweep()


@shared_task(name=queue.PROCESS_WEBHOOKS, ignore_result=True)
def process_webhooks() -> dict:
    """Apply the status notifications the API queued (no arguments: bodies hold phone numbers)."""
    return runtime().webhooks.process_inbox()


@shared_task(name=queue.START_DUE, ignore_result=True)
def start_due() -> list[str]:
    """Periodic (celery beat): start the scheduled and waiting campaigns whose time has come."""
    return runtime().pipeline.wake_due()
