-- Delivery and read statuses from WhatsApp's webhooks.

-- Adds p_n to one counter of one campaign in a {campaign: {key: n}} document.
CREATE OR REPLACE FUNCTION instancia_sofia.bump(p_deltas jsonb, p_campaign text, p_key text, p_n integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_set(
        CASE WHEN p_deltas ? p_campaign THEN p_deltas ELSE p_deltas || jsonb_build_object(p_campaign, '{}'::jsonb) END,
        ARRAY[p_campaign, p_key],
        to_jsonb(COALESCE((p_deltas #>> ARRAY[p_campaign, p_key])::integer, 0) + p_n));
$$;

-- Applies status notifications idempotently and only forward (sent < delivered < read; failed is final
-- unless a delivered or read proves otherwise), set-wise: every status of a batch is matched to its row in
-- one join, each row's statuses are folded into the furthest news they carry, and the rows change in one
-- UPDATE. Folding gives what applying them one by one in timestamp order would: a read beats a delivered,
-- either beats a failed, and the earliest timestamp of each kind is the one kept. The first pricing a status
-- carries is kept on the row, whatever the status says about delivery.
-- Returns {"deltas": {campaign: {sent, failed, unknown, delivered, read, "e:<code>", "b:<category>:<prefix>"}},
-- "applied", "orphans"}.
-- PL/pgSQL rather than SQL: PostgreSQL plans a SQL function's body again on every call, while PL/pgSQL keeps
-- its statement's plan for the session: 2.8 → 0.5 ms of PostgreSQL's CPU per call
-- with nothing to apply (docs/benchmarks.md, eleventh round).
CREATE OR REPLACE FUNCTION instancia_sofia.apply_statuses(p_statuses jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_result jsonb;
BEGIN
    WITH given AS (
        SELECT x.wamid, x.status, to_timestamp(COALESCE(x.ts, extract(epoch FROM now())::bigint)) AS at,
               x.callback, x.error_code, x.error_detail, x.pricing_category, x.pricing_type, x.pricing_model,
               x.billable,
               CASE WHEN x.callback ~ '^[^/]+/[0-9]{1,18}$' THEN split_part(x.callback, '/', 2)::bigint END AS cb_id,
               CASE WHEN x.callback ~ '^[^/]+/[0-9]{1,18}$' THEN split_part(x.callback, '/', 1) END AS cb_campaign
        FROM jsonb_to_recordset(p_statuses)
            AS x(wamid text, status text, ts bigint, callback text, error_code integer, error_detail text,
                 pricing_category text, pricing_type text, pricing_model text, billable boolean)
        WHERE x.status IN ('sent', 'delivered', 'read', 'failed')
    ),
    matched AS (
        -- Each status with the row it is about: by wamid, else by our callback data (<campaign>/<row id>).
        SELECT g.*, COALESCE(
                   (SELECT l.id FROM instancia_sofia.leads_activos l WHERE l.wamid = g.wamid),
                   (SELECT l.id FROM instancia_sofia.leads_activos l WHERE l.id = g.cb_id AND l.campaign_id = g.cb_campaign)
               ) AS row_id
        FROM given g
    ),
    orphaned AS (
        -- A status for a message we do not know yet is kept until its wamid shows up (rematch_orphans).
        INSERT INTO instancia_sofia.webhook_orphans (wamid, callback_data, status, status_at, error_code, error_detail,
                                                     pricing_category, pricing_type, pricing_model, billable)
        SELECT wamid, callback, status, at, error_code, error_detail, pricing_category, pricing_type, pricing_model,
               billable
        FROM matched WHERE row_id IS NULL
        RETURNING 1
    ),
    news AS (
        -- What each row's statuses say, folded.
        SELECT row_id,
               min(wamid) AS wamid,
               min(at) FILTER (WHERE status = 'sent') AS sent_at,
               bool_or(status = 'delivered') AS delivered,
               min(at) FILTER (WHERE status IN ('delivered', 'read')) AS delivered_at,
               min(at) FILTER (WHERE status = 'read') AS read_at,
               min(at) FILTER (WHERE status = 'failed') AS failed_at,
               (array_agg(error_code ORDER BY at) FILTER (WHERE status = 'failed'))[1] AS error_code,
               (array_agg(error_detail ORDER BY at) FILTER (WHERE status = 'failed'))[1] AS error_detail,
               -- The first pricing a status carries is the message's (any status may carry it).
               (array_agg(pricing_category ORDER BY at, status) FILTER (WHERE pricing_category IS NOT NULL))[1]
                   AS pricing_category,
               (array_agg(pricing_type ORDER BY at, status) FILTER (WHERE pricing_category IS NOT NULL))[1] AS pricing_type,
               (array_agg(pricing_model ORDER BY at, status) FILTER (WHERE pricing_category IS NOT NULL))[1] AS pricing_model,
               (array_agg(billable ORDER BY at, status) FILTER (WHERE pricing_category IS NOT NULL))[1] AS billable
        FROM matched WHERE row_id IS NOT NULL GROUP BY row_id
    ),
    old AS (
        -- The rows as they are, with their news, locked in id order (as record_outcomes locks them): never a
        -- deadlock. The news are joined here, row by row through the primary key: joined after the lock, the
        -- planner (which guesses a handful of statuses from jsonb_to_recordset) compared every row with
        -- every row's news, a batch of 500 taking 64 of its 70 ms there.
        SELECT l.id, l.campaign_id, l.phone, l.status, l.delivery_status, l.error_code,
               l.pricing_category IS NULL AS unpriced,
               n.wamid AS news_wamid, n.sent_at, n.delivered, n.delivered_at, n.read_at, n.failed_at,
               n.error_code AS news_code, n.error_detail AS news_detail,
               n.pricing_category, n.pricing_type, n.pricing_model, n.billable
        FROM news n JOIN instancia_sofia.leads_activos l ON l.id = n.row_id
        ORDER BY l.id FOR UPDATE OF l
    ),
    judged AS (
        SELECT o.*, o.unpriced AND o.pricing_category IS NOT NULL AS priced,
               CASE
                   WHEN o.read_at IS NOT NULL AND COALESCE(o.delivery_status, 'sent') <> 'read' THEN 'read'
                   WHEN o.delivered_at IS NOT NULL AND COALESCE(o.delivery_status, 'sent') IN ('sent', 'failed')
                       THEN 'delivered'
                   WHEN o.failed_at IS NOT NULL AND COALESCE(o.delivery_status, 'sent') = 'sent' THEN 'failed'
                   WHEN o.sent_at IS NOT NULL AND o.delivery_status IS NULL THEN 'sent'
               END AS new_delivery,
               -- How many kinds of news were news to the row (the "applied" figure).
               (CASE WHEN o.sent_at IS NOT NULL AND o.delivery_status IS NULL THEN 1 ELSE 0 END
                + CASE WHEN o.delivered AND COALESCE(o.delivery_status, 'sent') IN ('sent', 'failed') THEN 1 ELSE 0 END
                + CASE WHEN o.read_at IS NOT NULL AND COALESCE(o.delivery_status, 'sent') <> 'read' THEN 1 ELSE 0 END
                + CASE WHEN o.failed_at IS NOT NULL AND COALESCE(o.delivery_status, 'sent') = 'sent'
                            AND (o.delivered_at IS NULL OR o.failed_at < o.delivered_at) THEN 1 ELSE 0 END) AS news_count
        FROM old o
    ),
    decided AS (
        SELECT j.*,
               CASE
                   WHEN j.new_delivery IS NULL THEN j.status
                   WHEN j.new_delivery = 'failed' AND j.status IN ('sent', 'unknown') THEN 'failed'
                   WHEN j.new_delivery <> 'failed' AND j.status IN ('unknown', 'pending') THEN 'sent'
                   WHEN j.new_delivery <> 'failed' AND j.status = 'failed' AND j.delivery_status = 'failed' THEN 'sent'
                   ELSE j.status
               END AS new_status
        FROM judged j WHERE j.new_delivery IS NOT NULL OR j.priced
    ),
    changed AS (
        UPDATE instancia_sofia.leads_activos l
        SET delivery_status = COALESCE(d.new_delivery, l.delivery_status),
            status = d.new_status,
            wamid = COALESCE(l.wamid, d.news_wamid),
            delivered_at = CASE WHEN d.new_delivery IN ('delivered', 'read')
                                THEN COALESCE(l.delivered_at, d.delivered_at) ELSE l.delivered_at END,
            read_at = CASE WHEN d.new_delivery = 'read' THEN d.read_at ELSE l.read_at END,
            sent_at = CASE WHEN d.new_delivery IS NOT NULL AND d.new_status = 'sent'
                           THEN COALESCE(l.sent_at, d.sent_at, d.delivered_at) ELSE l.sent_at END,
            error_code = CASE WHEN d.new_delivery = 'failed' THEN d.news_code
                              WHEN d.new_delivery IS NOT NULL AND d.new_status = 'sent' THEN NULL ELSE l.error_code END,
            error_detail = CASE WHEN d.new_delivery = 'failed' THEN d.news_detail
                                WHEN d.new_delivery IS NOT NULL AND d.new_status = 'sent' THEN NULL
                                ELSE l.error_detail END,
            pricing_category = CASE WHEN d.priced THEN d.pricing_category ELSE l.pricing_category END,
            pricing_type = CASE WHEN d.priced THEN d.pricing_type ELSE l.pricing_type END,
            pricing_model = CASE WHEN d.priced THEN d.pricing_model ELSE l.pricing_model END,
            billable = CASE WHEN d.priced THEN d.billable ELSE l.billable END,
            delivery_updated_at = CASE WHEN d.new_delivery IS NOT NULL THEN now() ELSE l.delivery_updated_at END,
            updated_at = now()
        FROM decided d
        WHERE l.id = d.id
        RETURNING d.campaign_id, d.phone, d.status, d.delivery_status, d.error_code, d.new_status, d.new_delivery,
                  d.news_code, d.news_count, d.priced, d.billable, d.pricing_category
    ),
    moves AS (
        -- Each counter a changed row moves, as (campaign, key, n).
        SELECT campaign_id, 'delivered' AS key, 1 AS n FROM changed
        WHERE new_delivery IN ('delivered', 'read') AND NOT COALESCE(delivery_status IN ('delivered', 'read'), false)
        UNION ALL SELECT campaign_id, 'read', 1 FROM changed WHERE new_delivery = 'read'
        UNION ALL SELECT campaign_id, status, -1 FROM changed WHERE new_status <> status AND status <> 'pending'
        UNION ALL SELECT campaign_id, new_status, 1 FROM changed WHERE new_status <> status
        UNION ALL SELECT campaign_id, 'e:' || COALESCE(news_code::text, 'network'), 1 FROM changed
        WHERE new_status <> status AND new_status = 'failed'
        UNION ALL SELECT campaign_id, 'e:' || COALESCE(error_code::text, 'network'), -1 FROM changed
        WHERE new_status <> status AND new_status <> 'failed' AND status = 'failed'
        -- A billable message, by category and the first digits of its number (the country, for the rate card).
        UNION ALL SELECT campaign_id, 'b:' || pricing_category || ':' || left(phone, 3), 1 FROM changed
        WHERE priced AND billable
    ),
    totals AS (
        SELECT campaign_id, jsonb_object_agg(key, n) AS counts
        FROM (SELECT campaign_id, key, sum(n)::integer AS n FROM moves GROUP BY campaign_id, key) k
        WHERE n <> 0 GROUP BY campaign_id
    )
    SELECT jsonb_build_object(
        'deltas', COALESCE((SELECT jsonb_object_agg(campaign_id, counts) FROM totals), '{}'::jsonb),
        'applied', COALESCE((SELECT sum(news_count)::integer FROM changed), 0),
        'orphans', (SELECT count(*)::integer FROM orphaned))
    INTO v_result;
    RETURN v_result;
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
