-- Delivery and read tracking from WhatsApp status webhooks.
ALTER TABLE instancia_sofia.leads_activos
    ADD COLUMN IF NOT EXISTS delivery_status text
        CHECK (delivery_status IN ('sent', 'delivered', 'read', 'failed')),
    ADD COLUMN IF NOT EXISTS delivered_at timestamptz,
    ADD COLUMN IF NOT EXISTS read_at timestamptz,
    ADD COLUMN IF NOT EXISTS delivery_updated_at timestamptz;

-- Statuses that matched no recipient yet (kept for later matching, and to show foreign traffic).
CREATE TABLE IF NOT EXISTS instancia_sofia.webhook_orphans (
    id            bigserial PRIMARY KEY,
    wamid         text,
    callback_data text,
    status        text NOT NULL,
    status_at     timestamptz,
    error_code    integer,
    error_detail  text,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_orphans_wamid_idx ON instancia_sofia.webhook_orphans (wamid);
