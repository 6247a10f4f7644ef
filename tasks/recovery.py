"""The periodic sweeper: repairs what crashes leave behind, idempotently, so it may run anywhere and often."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tasks import keys, texts
from tasks.heartbeat import dead_workers, forget_worker
from tasks.pipeline import CampaignNotFound, Pipeline
from tasks.state import LiveState
from tasks.store.base import Store, StoreUnavailable
from tasks.vocabulary import CampaignStatus, Outcome

log = logging.getLogger("tasks.recovery")

# Campaigns whose batches may still be in flight (a paused or cancelled one hands claimed messages back).
_MOVING = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED)


class Sweeper:
    """One pass over open campaigns: recover dead workers' claims, requeue stale batches, finish or dispatch.

    - Claims of a worker that stopped beating: messages it was requesting become unknown (never resent
      blindly), the others go back to pending.
    - Claims older than `stuck_claim_s` even though their worker lives (their results were lost, for
      example while Redis restarted) are treated the same way.
    - A batch in flight for more than `stale_batch_s` gets the results of its chunk tasks that finished
      applied (its chord may never join when another chunk died with its worker); once nothing of it is
      being sent it goes back to the queue. Sending it again is safe: every message is claimed atomically.
    """

    def __init__(
        self,
        store: Store,
        state: LiveState,
        pipeline: Pipeline,
        finished_results: Callable[[list[str]], list[list[Outcome]]],
        *,
        owner: str,
        heartbeat_ttl_s: int,
        stale_batch_s: int,
        stuck_claim_s: int,
    ):
        self.store = store
        self.state = state
        self.pipeline = pipeline
        self.finished_results = finished_results
        self.owner = owner
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.stale_batch_s = stale_batch_s
        self.stuck_claim_s = stuck_claim_s

    def sweep(self) -> dict:
        """Repair every open campaign once; skipped while another sweeper holds the lock."""
        redis = self.state.redis
        if not redis.set(keys.SWEEP_LOCK, self.owner, nx=True, ex=max(30, self.stale_batch_s)):
            return {"skipped": True}
        report = {"unknown": 0, "released": 0, "requeued_batches": 0, "campaigns": 0}
        try:
            campaigns = set(self.store.open_campaigns()) | self.state.active_campaigns()
            owners = {campaign_id: self.store.claim_owners(campaign_id) for campaign_id in campaigns}
            dead = dead_workers(redis, self.heartbeat_ttl_s, {o for found in owners.values() for o in found})
            for campaign_id in sorted(campaigns):
                try:
                    self._sweep_campaign(campaign_id, owners[campaign_id], dead, report)
                except CampaignNotFound:
                    self.state.forget_campaign(campaign_id)
                report["campaigns"] += 1
            for owner in dead:
                forget_worker(redis, owner)
        finally:
            redis.delete(keys.SWEEP_LOCK)
        return report

    def guarded_sweep(self) -> dict:
        """A pass of `sweep` that ends at once, with a warning, while the database is away.

        Every repair needs the database; waiting for it would hold the sweep lock and a worker's slot while
        passes pile up behind it. The next pass, SWEEP_INTERVAL_S later, finds it back.
        """
        if not self.store.ping():
            log.warning(texts.LOG_SWEEP_NO_DATABASE, "ping")
            return {"skipped": True, "database": False}
        try:
            return self.sweep()
        except StoreUnavailable as exc:  # it went away during the pass, which is safe to cut short anywhere
            log.warning(texts.LOG_SWEEP_NO_DATABASE, exc)
            return {"skipped": True, "database": False}

    def _apply_finished_chunks(self, campaign_id: str, batch_no: int) -> None:
        """Record what the batch's finished chunk tasks reported, whether or not its chord joined."""
        self.pipeline.record_batch(
            campaign_id, batch_no, self.finished_results(self.state.batch_tasks(campaign_id, batch_no))
        )

    def _sweep_campaign(self, campaign_id: str, owners: dict[str, int], dead: set[str], report: dict) -> None:
        """Repair one campaign."""
        fields = self.pipeline.ensure_live_state(campaign_id)
        attempted: set[int] | None = None
        for owner, age in owners.items():
            if owner in dead:
                older_than = 0
            elif age > self.stuck_claim_s:
                older_than = self.stuck_claim_s
            else:
                continue
            if attempted is None:
                # Chunks that finished before their worker died have their outcomes in the result backend:
                # apply those first, so only messages whose fate is really unknown are treated as such.
                for batch_no in self.state.in_flight_since(campaign_id):
                    self._apply_finished_chunks(campaign_id, batch_no)
                attempted = self.state.attempted(campaign_id)
            moved = self.store.recover_claims(campaign_id, owner, sorted(attempted), older_than)
            if moved["unknown"] or moved["pending"]:
                self.state.add_counts(campaign_id, {"unknown": moved["unknown"]})
                report["unknown"] += moved["unknown"]
                report["released"] += moved["pending"]
                log.warning(texts.LOG_DEAD_WORKER_CLAIMS, campaign_id, owner, moved["unknown"], moved["pending"])
        if fields.get("status") in _MOVING:
            now = int(time.time())
            old = [
                b for b, since in self.state.in_flight_since(campaign_id).items() if now - since > self.stale_batch_s
            ]
            for batch_no in old:
                self._apply_finished_chunks(campaign_id, batch_no)
            if old:
                busy = set(self.store.sending_batches(campaign_id, int(fields["batch_size"])))
                for batch_no in old:
                    if batch_no not in busy:
                        self.state.batch_done(campaign_id, batch_no, requeue=True)
                        report["requeued_batches"] += 1
                        log.warning(texts.LOG_STALE_BATCH, campaign_id, batch_no)
        self.pipeline.settle(campaign_id)
