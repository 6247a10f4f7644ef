-- Templates checked against WhatsApp before a campaign is stored, and rich templates (header, buttons).
-- A buzón may name its WhatsApp Business Account: with it, uploads look the template up in that account's
-- listing (GET /{waba_id}/message_templates). A campaign keeps how its header and button parameters are
-- filled (the constant values and which recipient columns hold the others), read once per worker.
ALTER TABLE instancia_sofia.instancias_inputs ADD COLUMN IF NOT EXISTS waba_id text;
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS template_plan jsonb;
