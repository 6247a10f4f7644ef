"""Celery tasks: thin adapters that unpack ids and call the pipeline."""

from __future__ import annotations

from celery import chord, shared_task, uuid

from tasks.celery_app import get_celery_app
from tasks import recovery, webhooks
from tasks.heartbeat import owner_id
from tasks.runtime import get_runtime

# Producers (the web API) import this module without going through `celery -A tasks`; creating the app
# here makes it the current app, so the shared tasks below bind to it.
get_celery_app()


@shared_task(name="campaigns.send_chunk", acks_late=True, ignore_result=False)
def send_chunk(campaign_id: str, batch_no: int, chunk_no: int) -> list[dict]:
    """Send one chunk of a batch; returns small per-message outcomes for the batch callback."""
    return get_runtime().sender.send_chunk(campaign_id, batch_no, chunk_no, owner_id())


@shared_task(name="campaigns.finish_batch", acks_late=True, ignore_result=True)
def finish_batch(chunk_results: list[list[dict]], campaign_id: str, batch_no: int) -> None:
    """Chord callback: record a batch's results and dispatch the next batch."""
    get_runtime().pipeline.finish_batch(campaign_id, batch_no, chunk_results)


@shared_task(name="campaigns.sweep", ignore_result=True)
def sweep() -> dict:
    """Periodic repair (celery beat): dead workers' claims, stale batches, campaigns nobody moves."""
    runtime = get_runtime()
    s = runtime.settings
    return recovery.sweep(runtime.pipeline, finished_results, heartbeat_ttl_s=s.worker_heartbeat_ttl_s,
                          stale_batch_s=s.stale_batch_s, stuck_claim_s=s.stuck_claim_s)


@shared_task(name="webhooks.process", ignore_result=True)
def process_webhooks() -> dict:
    """Apply the status notifications the API queued (no arguments: bodies hold phone numbers)."""
    return webhooks.process_inbox(get_runtime().pipeline)


def schedule_webhooks() -> None:
    """Ask a worker to drain the notification inbox soon."""
    process_webhooks.apply_async(countdown=0.2)


def enqueue_batch(campaign_id: str, batch_no: int, chunks: int) -> None:
    """Send one chord: a send_chunk task per chunk, joined by finish_batch.

    The chunk task ids are remembered so the sweeper can still apply their results if the chord never
    joins (a chunk died with its worker).
    """
    header = [send_chunk.s(campaign_id, batch_no, n).set(task_id=uuid()) for n in range(chunks)]
    get_runtime().state.remember_batch_tasks(campaign_id, batch_no, [sig.id for sig in header])
    chord(header)(finish_batch.s(campaign_id, batch_no))


def finished_results(task_ids: list[str]) -> list[list[dict]]:
    """Results of those chunk tasks that finished; never waits for the others."""
    app = get_celery_app()
    results = []
    for task_id in task_ids:
        result = app.AsyncResult(task_id)
        if result.successful():
            results.append(result.result)
    return results
