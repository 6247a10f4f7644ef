-- Creating a campaign from an upload, in three steps both adapters share: begin_campaign, add_recipients
-- once per block of rows, finish_campaign. The Postgres adapter runs them in one transaction of its own while
-- the file is still being read; the Supabase adapter cannot hold a transaction across calls, so it sends the
-- whole upload to create_campaign_document, which runs the same three steps in one call.

-- Campaign creation before these steps: one JSON document, or the row alone and the recipients by COPY.
DROP FUNCTION IF EXISTS instancia_sofia.create_campaign(jsonb, jsonb);
DROP FUNCTION IF EXISTS instancia_sofia.create_campaign_row(jsonb, integer);
DROP FUNCTION IF EXISTS instancia_sofia.finish_campaign_row(text, integer, jsonb);

-- Stores the campaign row under a readable unique id (the slug, then slug-2, slug-3...), with a provisional
-- total of 1 until finish_campaign knows the real one. A repeated idempotency key returns the first
-- campaign with created = false, and the caller stores nothing else.
CREATE OR REPLACE FUNCTION instancia_sofia.begin_campaign(p_campaign jsonb)
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
                 idempotency_key, created_by, template_plan, retry_deferred, status, status_reason, scheduled_for,
                 resume_at, time_zone, send_window)
            VALUES (v_id, p_campaign->>'title', p_campaign->>'template', p_campaign->>'language',
                    p_campaign->>'buzon', COALESCE((p_campaign->>'named_params')::boolean, false), 1,
                    (p_campaign->>'batch_size')::integer, (p_campaign->>'chunk_size')::integer, v_key,
                    p_campaign->>'created_by', NULLIF(p_campaign->'template_plan', 'null'::jsonb),
                    COALESCE((p_campaign->>'retry_deferred')::boolean, true),
                    -- A campaign with a start time is 'scheduled' until wake_campaign starts it.
                    CASE WHEN p_campaign->>'scheduled_for' IS NULL THEN 'queued' ELSE 'scheduled' END,
                    p_campaign->>'status_reason',
                    (p_campaign->>'scheduled_for')::timestamptz, (p_campaign->>'scheduled_for')::timestamptz,
                    COALESCE(p_campaign->>'time_zone', 'America/Caracas'), COALESCE(p_campaign->>'send_window', ''));
            RETURN jsonb_build_object('id', v_id, 'total', 1, 'created', true);
        EXCEPTION WHEN unique_violation THEN
            -- Either the readable id is taken (try the next suffix) or a concurrent upload with the same
            -- idempotency key committed first (the next loop turn returns it).
            v_suffix := v_suffix + 1;
        END;
    END LOOP;
END;
$$;

-- Appends a block of recipients [{phone, parameters}, ...] after those the campaign already has, numbering
-- them on (seq 1..n in upload order, which is how batches and chunks are cut); returns how many it added.
CREATE OR REPLACE FUNCTION instancia_sofia.add_recipients(p_campaign_id text, p_recipients jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_last integer;
    v_added integer;
BEGIN
    -- Recipients carry no foreign key (see 005_campaign_row.sql), so the campaign is checked here, once.
    PERFORM FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % does not exist', p_campaign_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT COALESCE(max(seq), 0) INTO v_last FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id;
    INSERT INTO instancia_sofia.leads_activos (campaign_id, seq, phone, parameters)
    SELECT p_campaign_id, v_last + r.ord, r.phone, COALESCE(r.parameters, '[]'::jsonb)
    FROM ROWS FROM (jsonb_to_recordset(p_recipients) AS (phone text, parameters jsonb))
         WITH ORDINALITY AS r(phone, parameters, ord);
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN jsonb_build_object('added', v_added);
END;
$$;

-- Sets what is known only at the end of the file: the total (recipients are numbered 1..n, so n is the
-- highest seq) and the rejected rows. A campaign without recipients fails the campaigns.total > 0 check,
-- which rolls back the caller's transaction and with it the campaign row.
CREATE OR REPLACE FUNCTION instancia_sofia.finish_campaign(p_campaign_id text, p_rejected_rows jsonb)
RETURNS jsonb LANGUAGE sql AS $$
    UPDATE instancia_sofia.campaigns
    SET total = (SELECT COALESCE(max(seq), 0) FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id),
        rejected_rows = COALESCE(p_rejected_rows, '[]'::jsonb)
    WHERE id = p_campaign_id
    RETURNING jsonb_build_object('id', id, 'total', total, 'created', true);
$$;

-- The three steps in one call (so in one transaction) for callers that cannot hold a transaction open:
-- p_campaign as for begin_campaign plus its rejected_rows, p_recipients as for add_recipients.
CREATE OR REPLACE FUNCTION instancia_sofia.create_campaign_document(p_campaign jsonb, p_recipients jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_campaign jsonb := instancia_sofia.begin_campaign(p_campaign);
BEGIN
    IF NOT (v_campaign->>'created')::boolean THEN
        RETURN v_campaign;
    END IF;
    PERFORM instancia_sofia.add_recipients(v_campaign->>'id', p_recipients);
    RETURN instancia_sofia.finish_campaign(v_campaign->>'id', p_campaign->'rejected_rows');
END;
$$;
