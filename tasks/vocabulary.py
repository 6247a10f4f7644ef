"""The words the whole service shares: campaign and recipient statuses, counters, queues, an outcome.

Every module names these through this one definition, so adding a status or a counter is one change here
plus the code that acts on it; the SQL functions in `migrations/` spell the same values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class CampaignStatus(StrEnum):
    """Where a campaign is in its life; the store decides which transitions are allowed."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"  # stored with a start time; beat starts it then
    RUNNING = "running"
    WAITING = "waiting"  # started, holding until a time (quiet hours, the portfolio's daily limit)
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


# A campaign in one of these never sends again (retry reopens completed and failed ones explicitly).
FINAL_CAMPAIGN_STATUSES = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED})


class RecipientStatus(StrEnum):
    """Where one message is: waiting, claimed by a worker, or settled."""

    PENDING = "pending"  # waiting to be claimed (also: handed back unsent)
    SENDING = "sending"  # claimed by a worker, which may be requesting it right now
    SENT = "sent"  # WhatsApp accepted it
    FAILED = "failed"  # will not be delivered
    CANCELLED = "cancelled"  # the operator cancelled the campaign before it went out
    UNKNOWN = "unknown"  # it may have reached WhatsApp, but no answer says so: never resent blindly
    SUPPRESSED = "suppressed"  # the number opted out before its turn: never sent
    DEFERRED = "deferred"  # refused for the per-user marketing limit (131049): sent again once, later


# A recipient in one of these has been dealt with; the campaign completes when every recipient is.
SETTLED_RECIPIENT_STATUSES = (
    RecipientStatus.SENT,
    RecipientStatus.FAILED,
    RecipientStatus.CANCELLED,
    RecipientStatus.UNKNOWN,
    RecipientStatus.SUPPRESSED,
)
# Statuses an operator may send again; retrying unknown ones may deliver twice.
RETRYABLE_RECIPIENT_STATUSES = (RecipientStatus.UNKNOWN, RecipientStatus.FAILED)

# A campaign in one of these resumes by itself at its `resume_at` (tasks.scheduling wakes it).
TIMED_CAMPAIGN_STATUSES = frozenset({CampaignStatus.SCHEDULED, CampaignStatus.WAITING})

# Counters kept per campaign in Redis (increment-only, rebuilt from the store after a loss).
# `held`: sent messages whose send answer said WhatsApp holds them (held_for_quality_assessment, paused).
COUNTERS = ("sent", "failed", "cancelled", "unknown", "retries", "delivered", "read", "held", "suppressed", "deferred")

# Template statuses (message_template_status_update events) that pause its campaigns and refuse their resume
# until WhatsApp approves the template again.
BLOCKING_TEMPLATE_STATUSES = frozenset({"PAUSED", "DISABLED"})

# Celery queues: chunk sends, batch callbacks, the sweeper and webhook drains share the default one.
CAMPAIGNS_QUEUE = "campaigns"
# The webhook drains have a queue of their own, so a worker started with `-Q webhooks` can take them apart
# from sending (workers started without -Q consume both).
WEBHOOKS_QUEUE = "webhooks"


class Outcome(TypedDict, total=False):
    """What became of one claimed message, as a chunk records it in the store (plain JSON)."""

    id: int  # the recipient row
    status: str  # a RecipientStatus: sent, failed, unknown, or pending (handed back unsent)
    retries: int  # transient errors retried before this outcome
    wamid: str  # WhatsApp's message id, when sent
    error_code: int | None  # Cloud API error code, when failed
    error_detail: str  # masked detail for the operator
    owner: str  # the worker that claimed it (outcomes apply only to rows it still claims)
    message_status: str  # when sent but not "accepted": held_for_quality_assessment or paused
    retry_at: float  # with deferred: Unix time from which it may be sent again
    suppress_for: str  # with 131050: the buzón ("*": every buzón) whose suppression list gets the number


class ChunkReport(TypedDict):
    """What a chunk task tells the batch callback once its outcomes are in the store."""

    claimed: int  # recipients it claimed
    handed_back: int  # of those, left pending for a later task (deadline, pause, account trouble)
    sent: int  # recorded as sent by this chunk
    failed: int  # recorded as failed by this chunk
