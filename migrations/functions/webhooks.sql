-- Delivery and read statuses from WhatsApp's webhooks.

-- Adds p_n to one counter of one campaign in a {campaign: {key: n}} document.
CREATE OR REPLACE FUNCTION instancia_sofia.bump(p_deltas jsonb, p_campaign text, p_key text, p_n integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_set(
        CASE WHEN p_deltas ? p_campaign THEN p_deltas ELSE p_deltas || jsonb_build_object(p_campaign, '{}'::jsonb) END,
        ARRAY[p_campaign, p_key],
        to_jsonb(COALESCE((p_deltas #>> ARRAY[p_campaign, p_key])::integer, 0) + p_n));
$$;

-- Applies status notifications in timestamp order, idempotently and only forward
-- (sent < delivered < read; failed is final unless a later delivered or read proves otherwise).
-- The first pricing a message's notifications carry is kept on its row; a billable one counts once under
-- "b:<category>:<first 3 digits of the phone>" (enough to tell the country calling code, for the rate card).
-- Returns {"deltas": {campaign: {sent, failed, unknown, delivered, read, "e:<code>", "b:<category>:<prefix>"}},
-- "applied", "orphans"}.
CREATE OR REPLACE FUNCTION instancia_sofia.apply_statuses(p_statuses jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    s record;
    l instancia_sofia.leads_activos%ROWTYPE;
    v_at timestamptz;
    v_new text;
    v_status text;
    v_deltas jsonb := '{}'::jsonb;
    v_applied integer := 0;
    v_orphans integer := 0;
    v_was_delivered boolean;
    v_priced boolean;
BEGIN
    -- Lock every row these statuses touch first, in id order (as record_outcomes does): never a deadlock.
    PERFORM 1 FROM instancia_sofia.leads_activos t
    WHERE t.wamid IN (SELECT x.wamid FROM jsonb_to_recordset(p_statuses) AS x(wamid text) WHERE x.wamid IS NOT NULL)
       OR t.id IN (SELECT split_part(x.callback, '/', 2)::bigint FROM jsonb_to_recordset(p_statuses) AS x(callback text)
                   WHERE x.callback ~ '^[^/]+/[0-9]+$')
    ORDER BY t.id FOR UPDATE;
    FOR s IN
        SELECT * FROM jsonb_to_recordset(p_statuses)
            AS x(wamid text, status text, ts bigint, callback text, error_code integer, error_detail text,
                 pricing_category text, pricing_type text, pricing_model text, billable boolean)
        ORDER BY ts, CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 4 END
    LOOP
        v_at := to_timestamp(COALESCE(s.ts, extract(epoch FROM now())::bigint));
        SELECT * INTO l FROM instancia_sofia.leads_activos WHERE wamid = s.wamid FOR UPDATE;
        IF NOT FOUND AND s.callback ~ '^[^/]+/[0-9]+$' THEN
            SELECT * INTO l FROM instancia_sofia.leads_activos
            WHERE id = split_part(s.callback, '/', 2)::bigint AND campaign_id = split_part(s.callback, '/', 1)
            FOR UPDATE;
        END IF;
        IF NOT FOUND THEN
            INSERT INTO instancia_sofia.webhook_orphans (wamid, callback_data, status, status_at, error_code, error_detail,
                                                         pricing_category, pricing_type, pricing_model, billable)
            VALUES (s.wamid, s.callback, s.status, v_at, s.error_code, s.error_detail,
                    s.pricing_category, s.pricing_type, s.pricing_model, s.billable);
            v_orphans := v_orphans + 1;
            CONTINUE;
        END IF;

        -- Forward only: which delivery status this notification leaves the message in.
        v_new := CASE
            WHEN s.status = 'sent' AND l.delivery_status IS NULL THEN 'sent'
            WHEN s.status = 'delivered' AND COALESCE(l.delivery_status, 'sent') IN ('sent', 'failed') THEN 'delivered'
            WHEN s.status = 'read' AND COALESCE(l.delivery_status, 'sent') <> 'read' THEN 'read'
            WHEN s.status = 'failed' AND COALESCE(l.delivery_status, 'sent') = 'sent' THEN 'failed'
            ELSE NULL END;
        -- Pricing is kept whatever the status says about delivery (a late "sent" may be the one carrying it).
        v_priced := s.pricing_category IS NOT NULL AND l.pricing_category IS NULL;
        IF v_priced AND s.billable THEN
            v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, 'b:' || s.pricing_category || ':' || left(l.phone, 3), 1);
        END IF;
        IF v_new IS NULL THEN
            IF v_priced THEN
                UPDATE instancia_sofia.leads_activos
                SET pricing_category = s.pricing_category, pricing_type = s.pricing_type,
                    pricing_model = s.pricing_model, billable = s.billable, updated_at = now()
                WHERE id = l.id;
            END IF;
            CONTINUE;  -- a repeat, or older news than what we know
        END IF;
        v_applied := v_applied + 1;
        v_was_delivered := COALESCE(l.delivery_status IN ('delivered', 'read'), false);
        IF v_new IN ('delivered', 'read') AND NOT v_was_delivered THEN
            v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, 'delivered', 1);
        END IF;
        IF v_new = 'read' THEN
            v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, 'read', 1);
        END IF;

        -- What the notification says about our own send status.
        v_status := l.status;
        IF v_new = 'failed' AND l.status IN ('sent', 'unknown') THEN
            v_status := 'failed';
        ELSIF v_new <> 'failed' AND l.status IN ('unknown', 'pending') THEN
            v_status := 'sent';   -- proof it went out: never send it again
        ELSIF v_new <> 'failed' AND l.status = 'failed' AND l.delivery_status = 'failed' THEN
            v_status := 'sent';   -- a later delivered/read overrules the failure
        END IF;
        IF v_status <> l.status THEN
            IF l.status <> 'pending' THEN
                v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, l.status, -1);
            END IF;
            v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, v_status, 1);
            IF v_status = 'failed' THEN
                v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, 'e:' || COALESCE(s.error_code::text, 'network'), 1);
            ELSIF l.status = 'failed' THEN
                v_deltas := instancia_sofia.bump(v_deltas, l.campaign_id, 'e:' || COALESCE(l.error_code::text, 'network'), -1);
            END IF;
        END IF;

        UPDATE instancia_sofia.leads_activos
        SET delivery_status = v_new,
            status = v_status,
            wamid = COALESCE(wamid, s.wamid),
            delivered_at = CASE WHEN v_new IN ('delivered', 'read') THEN COALESCE(delivered_at, v_at) ELSE delivered_at END,
            read_at = CASE WHEN v_new = 'read' THEN v_at ELSE read_at END,
            sent_at = CASE WHEN v_status = 'sent' THEN COALESCE(sent_at, v_at) ELSE sent_at END,
            error_code = CASE WHEN v_new = 'failed' THEN s.error_code
                              WHEN v_status = 'sent' THEN NULL ELSE error_code END,
            error_detail = CASE WHEN v_new = 'failed' THEN s.error_detail
                                WHEN v_status = 'sent' THEN NULL ELSE error_detail END,
            pricing_category = CASE WHEN v_priced THEN s.pricing_category ELSE pricing_category END,
            pricing_type = CASE WHEN v_priced THEN s.pricing_type ELSE pricing_type END,
            pricing_model = CASE WHEN v_priced THEN s.pricing_model ELSE pricing_model END,
            billable = CASE WHEN v_priced THEN s.billable ELSE billable END,
            delivery_updated_at = now(),
            updated_at = now()
        WHERE id = l.id;
    END LOOP;
    RETURN jsonb_build_object('deltas', v_deltas, 'applied', v_applied, 'orphans', v_orphans);
END;
$$;

-- Re-applies orphan statuses whose wamid has since been stored (their message's result came later).
CREATE OR REPLACE FUNCTION instancia_sofia.rematch_orphans()
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_matched jsonb;
    v_result jsonb := jsonb_build_object('deltas', '{}'::jsonb, 'applied', 0, 'orphans', 0);
BEGIN
    DELETE FROM instancia_sofia.webhook_orphans WHERE received_at < now() - interval '7 days';
    WITH m AS (
        DELETE FROM instancia_sofia.webhook_orphans o
        USING instancia_sofia.leads_activos l
        WHERE l.wamid = o.wamid
        RETURNING o.wamid, o.status, extract(epoch FROM o.status_at)::bigint AS ts, o.callback_data AS callback,
                  o.error_code, o.error_detail, o.pricing_category, o.pricing_type, o.pricing_model, o.billable)
    SELECT jsonb_agg(to_jsonb(m)) INTO v_matched FROM m;
    IF v_matched IS NOT NULL THEN
        v_result := instancia_sofia.apply_statuses(v_matched);
    END IF;
    RETURN v_result;
END;
$$;

-- Delivered, read and held counts and the latest of each timestamp, from the rows; with the billable
-- messages under the same "b:<category>:<prefix>" keys apply_statuses counts them by.
CREATE OR REPLACE FUNCTION instancia_sofia.delivery_counts(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'delivered', count(*) FILTER (WHERE delivery_status IN ('delivered', 'read')),
        'read', count(*) FILTER (WHERE delivery_status = 'read'),
        'held', count(*) FILTER (WHERE message_status IS NOT NULL),
        'last_delivered_at', max(delivered_at),
        'last_read_at', max(read_at))
        || COALESCE((SELECT jsonb_object_agg(key, n) FROM (
               SELECT 'b:' || pricing_category || ':' || left(phone, 3) AS key, count(*) AS n
               FROM instancia_sofia.leads_activos
               WHERE campaign_id = p_campaign_id AND billable AND pricing_category IS NOT NULL
               GROUP BY 1) b), '{}'::jsonb)
    FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id;
$$;
