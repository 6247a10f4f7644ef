-- The store's health check: answers true when the database and its functions are reachable.
CREATE OR REPLACE FUNCTION instancia_sofia.ping()
RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT 'true'::jsonb; $$;
