-- Sender (buzón) credentials. The access token is returned only by get_sender, which the worker uses.

-- Before the WhatsApp Business Account id (013_templates.sql) the function took four arguments.
DROP FUNCTION IF EXISTS instancia_sofia.upsert_sender(text, text, text, integer);

CREATE OR REPLACE FUNCTION instancia_sofia.upsert_sender(
    p_buzon text, p_phone_number_id text, p_access_token text, p_messages_per_second integer DEFAULT NULL,
    p_waba_id text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.instancias_inputs AS s
        (buzon, phone_number_id, access_token, messages_per_second, waba_id)
    VALUES (p_buzon, p_phone_number_id, p_access_token, p_messages_per_second, NULLIF(p_waba_id, ''))
    ON CONFLICT (buzon) DO UPDATE
        SET phone_number_id = EXCLUDED.phone_number_id,
            access_token = EXCLUDED.access_token,
            messages_per_second = EXCLUDED.messages_per_second,
            waba_id = EXCLUDED.waba_id,
            updated_at = now()
    RETURNING jsonb_build_object('buzon', s.buzon, 'phone_number_id', s.phone_number_id,
                                 'messages_per_second', s.messages_per_second, 'waba_id', s.waba_id);
$$;

-- With the buzón's portfolio and that portfolio's messaging limit (NULL: unlimited, or no portfolio).
CREATE OR REPLACE FUNCTION instancia_sofia.get_sender(p_buzon text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('buzon', s.buzon, 'phone_number_id', s.phone_number_id, 'access_token', s.access_token,
                              'messages_per_second', s.messages_per_second, 'waba_id', s.waba_id,
                              'portfolio_id', s.portfolio_id, 'messaging_limit', p.messaging_limit)
    FROM instancia_sofia.instancias_inputs s
    LEFT JOIN instancia_sofia.portfolios p ON p.id = s.portfolio_id
    WHERE s.buzon = p_buzon;
$$;

-- Every buzón without its token, for operators.
CREATE OR REPLACE FUNCTION instancia_sofia.list_senders()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object('buzon', buzon, 'phone_number_id', phone_number_id,
                                                 'messages_per_second', messages_per_second, 'waba_id', waba_id)
                              ORDER BY buzon), '[]')
    FROM instancia_sofia.instancias_inputs;
$$;
