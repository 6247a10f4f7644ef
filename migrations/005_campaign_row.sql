-- The foreign key from each recipient to its campaign fired a trigger per inserted row (about a third of
-- a 100,000-row upload's time). Recipients are only ever written by the upload functions
-- (functions/uploads.sql) in the same transaction as their campaign, and deleted with it by
-- delete_campaign, so the key protected nothing else.
ALTER TABLE instancia_sofia.leads_activos DROP CONSTRAINT IF EXISTS leads_activos_campaign_id_fkey;
