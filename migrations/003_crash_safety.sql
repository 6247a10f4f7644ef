-- Who claimed a recipient, so a dead worker's claims can be found (functions/claims.sql).
ALTER TABLE instancia_sofia.leads_activos ADD COLUMN IF NOT EXISTS claimed_by text;
