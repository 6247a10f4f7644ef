"""Small helpers of the in-process tests."""

from __future__ import annotations

from collections import Counter

from tasks.runtime import Runtime


def numbers(n: int, start: int = 4141000000) -> list[str]:
    """`n` distinct Venezuelan mobile numbers in E.164 digits."""
    return [f"58{start + i}" for i in range(n)]


def new_campaign(
    rt: Runtime, campaign_id: str, n: int, *, buzon: str = "ventas", start: bool = True, template: str = "promo_enero"
) -> list[str]:
    """Store a campaign of `n` recipients the way an upload does and (by default) start it; returns the numbers."""
    phones = numbers(n)
    s = rt.settings
    campaign = {
        "id": campaign_id,
        "title": campaign_id,
        "template": template,
        "language": "es",
        "buzon": buzon,
        "named_params": False,
        "batch_size": s.batch_size,
        "chunk_size": min(s.chunk_size, s.batch_size),
        "idempotency_key": None,
    }
    stored = rt.store.create_campaign(
        campaign, ({"phone": p, "parameters": [f"Cliente {i}"]} for i, p in enumerate(phones))
    )
    assert stored["created"] and stored["total"] == n
    if start:
        rt.pipeline.start(campaign_id)
    return phones


def live(rt: Runtime, campaign_id: str) -> dict:
    """The campaign's live counters and status, as integers where they are numbers."""
    fields = rt.state.fields(campaign_id)
    return {k: (int(v) if v.lstrip("-").isdigit() else v) for k, v in fields.items()}


def stored_statuses(rt: Runtime, campaign_id: str) -> dict[str, int]:
    """The store's count of recipients by status (the authority)."""
    return {k: v for k, v in rt.store.campaign_counts(campaign_id).items() if v}


def sent_to(sandbox) -> Counter:
    """How many messages the sandbox accepted per recipient."""
    return Counter(m["to"] for m in sandbox.messages())
