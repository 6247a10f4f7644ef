-- The campaign row alone (readable unique id, idempotency key), so the direct Postgres adapter can COPY
-- the recipients in the same transaction instead of sending them as one large JSON document.
CREATE OR REPLACE FUNCTION instancia_sofia.create_campaign_row(p_campaign jsonb, p_total integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_key text := p_campaign->>'idempotency_key';
    v_base text := p_campaign->>'id';
    v_id text;
    v_existing record;
    v_suffix integer := 1;
BEGIN
    LOOP
        IF v_key IS NOT NULL THEN
            SELECT id, total INTO v_existing FROM instancia_sofia.campaigns WHERE idempotency_key = v_key;
            IF FOUND THEN
                RETURN jsonb_build_object('id', v_existing.id, 'total', v_existing.total, 'created', false);
            END IF;
        END IF;
        v_id := CASE WHEN v_suffix = 1 THEN v_base ELSE v_base || '-' || v_suffix END;
        BEGIN
            INSERT INTO instancia_sofia.campaigns
                (id, title, template, language, buzon, named_params, total, batch_size, chunk_size,
                 idempotency_key, rejected_rows)
            VALUES (v_id, p_campaign->>'title', p_campaign->>'template', p_campaign->>'language',
                    p_campaign->>'buzon', COALESCE((p_campaign->>'named_params')::boolean, false), p_total,
                    (p_campaign->>'batch_size')::integer, (p_campaign->>'chunk_size')::integer, v_key,
                    COALESCE(p_campaign->'rejected_rows', '[]'::jsonb));
            RETURN jsonb_build_object('id', v_id, 'total', p_total, 'created', true);
        EXCEPTION WHEN unique_violation THEN
            -- Either the readable id is taken (try the next suffix) or a concurrent upload with the same
            -- idempotency key committed first (the next loop turn returns it).
            v_suffix := v_suffix + 1;
        END;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.create_campaign(p_campaign jsonb, p_leads jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_row jsonb := instancia_sofia.create_campaign_row(p_campaign, jsonb_array_length(p_leads));
BEGIN
    IF (v_row->>'created')::boolean THEN
        INSERT INTO instancia_sofia.leads_activos (campaign_id, seq, phone, parameters)
        SELECT v_row->>'id', t.ord, t.e->>'phone', COALESCE(t.e->'parameters', '[]'::jsonb)
        FROM jsonb_array_elements(p_leads) WITH ORDINALITY AS t(e, ord);
    END IF;
    RETURN v_row;
END;
$$;

-- The foreign key from each recipient to its campaign fired a trigger per inserted row (about a third of
-- a 100,000-row upload's time). Recipients are only ever written by create_campaign in the same
-- transaction as their campaign, and deleted with it below, so the key protected nothing else.
ALTER TABLE instancia_sofia.leads_activos DROP CONSTRAINT IF EXISTS leads_activos_campaign_id_fkey;

CREATE OR REPLACE FUNCTION instancia_sofia.delete_campaign(p_campaign_id text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH l AS (DELETE FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id),
         d AS (DELETE FROM instancia_sofia.campaigns WHERE id = p_campaign_id RETURNING 1)
    SELECT jsonb_build_object('deleted', count(*) > 0) FROM d;
$$;
