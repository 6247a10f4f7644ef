-- Before recovery consulted WhatsApp's notifications, a crashed worker's message could be left unknown
-- although a sent, delivered, read or failed notification for it had been applied, and later repeats of
-- that notification no longer moved it. Those messages are settled as WhatsApp reported them; recovery and
-- the outcome writes now never leave such a message unknown (migrations/functions/claims.sql, outcomes.sql).
UPDATE instancia_sofia.leads_activos
SET status = CASE WHEN delivery_status = 'failed' THEN 'failed' ELSE 'sent' END,
    sent_at = CASE WHEN delivery_status = 'failed' THEN sent_at ELSE COALESCE(sent_at, delivery_updated_at) END,
    error_detail = CASE WHEN delivery_status = 'failed' THEN error_detail ELSE NULL END,
    updated_at = now()
WHERE status = 'unknown' AND delivery_status IS NOT NULL;
