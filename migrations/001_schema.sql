-- Tables of the campaign service: sender credentials, campaigns and one row per recipient.
CREATE SCHEMA IF NOT EXISTS instancia_sofia;

CREATE TABLE IF NOT EXISTS instancia_sofia.instancias_inputs (
    buzon               text PRIMARY KEY,
    phone_number_id     text NOT NULL,
    access_token        text NOT NULL,
    messages_per_second integer CHECK (messages_per_second IS NULL OR messages_per_second > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS instancia_sofia.campaigns (
    id              text PRIMARY KEY,
    title           text NOT NULL,
    template        text NOT NULL,
    language        text NOT NULL,
    buzon           text NOT NULL REFERENCES instancia_sofia.instancias_inputs (buzon),
    named_params    boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'paused', 'cancelled', 'completed', 'failed')),
    status_reason   text,
    total           integer NOT NULL CHECK (total > 0),
    batch_size      integer NOT NULL CHECK (batch_size > 0),
    chunk_size      integer NOT NULL CHECK (chunk_size > 0),
    idempotency_key text UNIQUE,
    rejected_rows   jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS campaigns_created_at_idx ON instancia_sofia.campaigns (created_at DESC);

CREATE TABLE IF NOT EXISTS instancia_sofia.leads_activos (
    id           bigserial PRIMARY KEY,
    campaign_id  text NOT NULL REFERENCES instancia_sofia.campaigns (id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    phone        text NOT NULL,
    parameters   jsonb NOT NULL DEFAULT '[]'::jsonb,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'unknown')),
    wamid        text,
    error_code   integer,
    error_detail text,
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    claimed_at   timestamptz,
    sent_at      timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, seq)
);
CREATE INDEX IF NOT EXISTS leads_activos_wamid_idx ON instancia_sofia.leads_activos (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_activos_open_idx ON instancia_sofia.leads_activos (campaign_id, status)
    WHERE status IN ('pending', 'sending', 'unknown');
