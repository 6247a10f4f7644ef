-- Business portfolios: the messaging limit every buzón of one portfolio shares, set by an operator or by
-- Meta's business_capability_update notifications.

-- Registers or changes a portfolio; p_waba_ids NULL keeps the accounts it has. p_limit NULL is unlimited.
CREATE OR REPLACE FUNCTION instancia_sofia.upsert_portfolio(p_id text, p_limit integer, p_waba_ids text[])
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.portfolios AS p (id, messaging_limit, waba_ids, limit_source)
    VALUES (p_id, p_limit, COALESCE(p_waba_ids, '{}'), 'operator')
    ON CONFLICT (id) DO UPDATE
        SET messaging_limit = EXCLUDED.messaging_limit,
            waba_ids = COALESCE(p_waba_ids, p.waba_ids),
            limit_source = 'operator',
            updated_at = now()
    RETURNING jsonb_build_object('id', p.id, 'messaging_limit', p.messaging_limit, 'waba_ids', to_jsonb(p.waba_ids),
                                 'limit_source', p.limit_source);
$$;

-- Puts a buzón in a portfolio (NULL takes it out); false when the buzón is not registered.
CREATE OR REPLACE FUNCTION instancia_sofia.set_sender_portfolio(p_buzon text, p_portfolio_id text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH u AS (
        UPDATE instancia_sofia.instancias_inputs SET portfolio_id = p_portfolio_id, updated_at = now()
        WHERE buzon = p_buzon RETURNING 1)
    SELECT jsonb_build_object('updated', count(*) > 0) FROM u;
$$;

-- Every portfolio with its buzones.
CREATE OR REPLACE FUNCTION instancia_sofia.list_portfolios()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'id', p.id, 'messaging_limit', p.messaging_limit, 'waba_ids', to_jsonb(p.waba_ids),
               'limit_source', p.limit_source, 'updated_at', p.updated_at,
               'buzones', COALESCE((SELECT jsonb_agg(s.buzon ORDER BY s.buzon) FROM instancia_sofia.instancias_inputs s
                                    WHERE s.portfolio_id = p.id), '[]'::jsonb)) ORDER BY p.id), '[]'::jsonb)
    FROM instancia_sofia.portfolios p;
$$;

-- Applies business_capability_update notifications [{waba_id, limit}] (limit NULL: unlimited): each updates
-- the portfolio that lists the account (or whose id it is). Campaigns of that portfolio waiting for budget
-- are made due now, so a raised limit lets them continue at once (one still over it waits again).
CREATE OR REPLACE FUNCTION instancia_sofia.apply_capability_updates(p_updates jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_update record;
    v_changed text[] := '{}';
    v_report jsonb := '[]'::jsonb;
    v_id text;
BEGIN
    FOR v_update IN SELECT * FROM jsonb_to_recordset(p_updates) AS x(waba_id text, "limit" integer) LOOP
        FOR v_id IN
            UPDATE instancia_sofia.portfolios
            SET messaging_limit = v_update."limit", limit_source = 'webhook', updated_at = now()
            WHERE (v_update.waba_id = ANY (waba_ids) OR id = v_update.waba_id)
              AND messaging_limit IS DISTINCT FROM v_update."limit"
            RETURNING id
        LOOP
            v_changed := v_changed || v_id;
            v_report := v_report || jsonb_build_object('id', v_id, 'messaging_limit', v_update."limit");
        END LOOP;
    END LOOP;
    UPDATE instancia_sofia.campaigns c SET resume_at = now(), updated_at = now()
    WHERE c.status = 'waiting' AND c.resume_at > now()
      AND c.buzon IN (SELECT buzon FROM instancia_sofia.instancias_inputs WHERE portfolio_id = ANY (v_changed));
    RETURN jsonb_build_object('changed', v_report);
END;
$$;

-- The recipients the portfolio's buzones messaged in the last p_window_s seconds, [[phone, epoch], ...]:
-- what rebuilds the live count after Redis lost it. It reads the recipients table without an index of its
-- own, which is acceptable for a rebuild that happens only after a Redis loss.
CREATE OR REPLACE FUNCTION instancia_sofia.portfolio_recent_recipients(p_portfolio_id text, p_window_s integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_array(phone, at)), '[]'::jsonb)
    FROM (SELECT l.phone, extract(epoch FROM max(COALESCE(l.sent_at, l.claimed_at, l.updated_at)))::float8 AS at
          FROM instancia_sofia.leads_activos l
          JOIN instancia_sofia.campaigns c ON c.id = l.campaign_id
          JOIN instancia_sofia.instancias_inputs s ON s.buzon = c.buzon
          WHERE s.portfolio_id = p_portfolio_id
            AND l.status IN ('sending', 'sent', 'failed', 'unknown')
            AND COALESCE(l.sent_at, l.claimed_at, l.updated_at) > now() - make_interval(secs => p_window_s)
          GROUP BY l.phone) r;
$$;
