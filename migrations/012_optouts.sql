-- Opt-outs and the per-user marketing limit (131049).
--
-- suppressions: the numbers that must not get marketing messages, per buzón, or for every buzón when the
-- buzón is '*'. A lifted opt-out keeps its row (active = false) with the time of the event that lifted it,
-- so that an older notification arriving late (WhatsApp does not keep order) cannot undo a newer one.
CREATE TABLE IF NOT EXISTS instancia_sofia.suppressions (
    buzon       text NOT NULL,
    phone       text NOT NULL,
    active      boolean NOT NULL,
    source      text NOT NULL CHECK (source IN ('manual', 'send_error', 'user_preferences', 'keyword')),
    reason      text,
    event_at    timestamptz NOT NULL,
    campaign_id text,
    actor       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (buzon, phone)
);
CREATE INDEX IF NOT EXISTS suppressions_active_idx ON instancia_sofia.suppressions (updated_at DESC, phone)
    WHERE active;

-- Two recipient statuses: suppressed (the number opted out before its turn came; never sent, settled) and
-- deferred (refused for the per-user marketing limit; sent again once, when deferred_until has passed).
ALTER TABLE instancia_sofia.leads_activos DROP CONSTRAINT IF EXISTS leads_activos_status_check;
ALTER TABLE instancia_sofia.leads_activos ADD CONSTRAINT leads_activos_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'unknown', 'suppressed', 'deferred'));
ALTER TABLE instancia_sofia.leads_activos ADD COLUMN IF NOT EXISTS deferred_until timestamptz;
ALTER TABLE instancia_sofia.leads_activos ADD COLUMN IF NOT EXISTS deferrals smallint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS leads_activos_deferred_idx ON instancia_sofia.leads_activos (deferred_until)
    WHERE status = 'deferred';

-- Whether a campaign sends its deferred recipients again by itself (the operator's choice at upload).
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS retry_deferred boolean NOT NULL DEFAULT true;
