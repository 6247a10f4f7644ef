"""The periodic sweeper: repairs what crashes leave behind, idempotently, so it may run anywhere and often."""

from __future__ import annotations

import logging
import time
from typing import Callable

from tasks.heartbeat import dead_workers, forget_worker, owner_id
from tasks.pipeline import CampaignNotFound, Pipeline

log = logging.getLogger("tasks.recovery")

LOCK_KEY = "wcq:sweep:lock"


def sweep(pipeline: Pipeline, finished_results: Callable[[list[str]], list[list[dict]]], *, heartbeat_ttl_s: int,
          stale_batch_s: int, stuck_claim_s: int) -> dict:
    """One pass over open campaigns: recover dead workers' claims, requeue stale batches, finish or dispatch.

    - Claims of a worker that stopped beating: messages it was requesting become unknown (never resent
      blindly), the others go back to pending.
    - Claims older than `stuck_claim_s` even though their worker lives (their results were lost, for
      example while Redis restarted) are treated the same way.
    - A batch in flight for more than `stale_batch_s` gets the results of its chunk tasks that finished
      applied (its chord may never join when another chunk died with its worker); once nothing of it is
      being sent it goes back to the queue. Sending it again is safe: every message is claimed atomically.
    """
    redis = pipeline.state.redis
    if not redis.set(LOCK_KEY, owner_id(), nx=True, ex=max(30, stale_batch_s)):
        return {"skipped": True}
    report = {"unknown": 0, "released": 0, "requeued_batches": 0, "campaigns": 0}
    try:
        campaigns = set(pipeline.store.open_campaigns()) | pipeline.state.active_campaigns()
        owners = {campaign_id: pipeline.store.claim_owners(campaign_id) for campaign_id in campaigns}
        dead = dead_workers(redis, heartbeat_ttl_s, {o for found in owners.values() for o in found})
        for campaign_id in sorted(campaigns):
            try:
                _sweep_campaign(pipeline, finished_results, campaign_id, owners[campaign_id], dead,
                                stale_batch_s, stuck_claim_s, report)
            except CampaignNotFound:
                pipeline.state.redis.srem("wcq:campaigns:active", campaign_id)
            report["campaigns"] += 1
        for owner in dead:
            forget_worker(redis, owner)
    finally:
        redis.delete(LOCK_KEY)
    return report


def _sweep_campaign(pipeline: Pipeline, finished_results, campaign_id: str, owners: dict[str, int],
                    dead: set[str], stale_batch_s: int, stuck_claim_s: int, report: dict) -> None:
    """Repair one campaign."""
    fields = pipeline.ensure_live_state(campaign_id)
    store, state = pipeline.store, pipeline.state
    attempted: set[int] | None = None
    for owner, age in owners.items():
        if owner in dead:
            older_than = 0
        elif age > stuck_claim_s:
            older_than = stuck_claim_s
        else:
            continue
        if attempted is None:
            # Chunks that finished before their worker died have their outcomes in the result backend:
            # apply those first, so only messages whose fate is really unknown are treated as such.
            for batch_no in state.in_flight_since(campaign_id):
                pipeline.record_batch(campaign_id, batch_no,
                                      finished_results(state.batch_tasks(campaign_id, batch_no)))
            attempted = state.attempted(campaign_id)
        moved = store.recover_claims(campaign_id, owner, sorted(attempted), older_than)
        if moved["unknown"] or moved["pending"]:
            state.add_counts(campaign_id, {"unknown": moved["unknown"]})
            report["unknown"] += moved["unknown"]
            report["released"] += moved["pending"]
            log.warning("Campaña %s: el worker %s dejó %d mensajes sin confirmar (quedan como desconocidos) y %d "
                        "sin enviar (vuelven a la cola)", campaign_id, owner, moved["unknown"], moved["pending"])
    if fields.get("status") in ("running", "paused", "cancelled"):
        now = int(time.time())
        old = [b for b, since in state.in_flight_since(campaign_id).items() if now - since > stale_batch_s]
        for batch_no in old:
            pipeline.record_batch(campaign_id, batch_no, finished_results(state.batch_tasks(campaign_id, batch_no)))
        if old:
            busy = set(store.sending_batches(campaign_id, int(fields["batch_size"])))
            for batch_no in old:
                if batch_no not in busy:
                    state.batch_done(campaign_id, batch_no, requeue=True)
                    report["requeued_batches"] += 1
                    log.warning("Campaña %s: el batch %d no terminó a tiempo; vuelve a la cola", campaign_id,
                                batch_no)
    pipeline.settle(campaign_id)
