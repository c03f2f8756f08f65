-- Outputs: where the MQTT feed and the webhook fan-out stand in the change log, webhook
-- subscriptions, their durable outbox, and every delivery attempt.

-- Durable positions in event_log, one per consumer: every change with seq <= seq has been
-- handed on ('mqtt_feed': published and acknowledged by the broker; 'webhook_fanout':
-- written to the outbox of every matching subscription). Only the holder of the consumer's
-- advisory lock moves it. They start at the log's head as of this migration, so that an
-- upgrade does not replay the history downstream.
CREATE TABLE feed_cursor (
    name        text PRIMARY KEY,
    seq         bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO feed_cursor (name, seq)
SELECT name, (SELECT coalesce(max(seq), 0) FROM event_log)
FROM (VALUES ('mqtt_feed'), ('webhook_fanout')) AS consumers (name);

CREATE TABLE webhook_subscriptions (
    id               bigserial PRIMARY KEY,
    url              text NOT NULL,
    secret           text NOT NULL,          -- Standard Webhooks secret, 'whsec_' + base64
    description      text NOT NULL DEFAULT '',
    -- filters; NULL: any. grid is a subtree root ("X or below").
    grid             text,
    grid_ancestors   text[] NOT NULL DEFAULT '{}',  -- of `grid`, for token scope checks
    severities       text[],
    categories       text[],
    changes          text[],
    created_by       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    start_seq        bigint NOT NULL,        -- receives the changes logged after this one
    enabled          boolean NOT NULL DEFAULT true,
    disabled_at      timestamptz,
    disabled_reason  text,
    -- delivery state: consecutive failures, since when, when to try again
    failures         integer NOT NULL DEFAULT 0,
    failing_since    timestamptz,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_success_at  timestamptz,
    -- the worker delivering to this subscription now, until when (claimed with SKIP LOCKED)
    leased_by        text,
    lease_until      timestamptz
);
CREATE INDEX webhook_subscriptions_due ON webhook_subscriptions (next_attempt_at) WHERE enabled;

-- What each subscription still has to receive: a row per (subscription, change), removed
-- when the receiver acknowledges it (2xx). Delivered in seq order per subscription.
CREATE TABLE webhook_outbox (
    subscription_id  bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,        -- event_log.seq
    attempts         integer NOT NULL DEFAULT 0,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, seq)
);

-- One row per delivery attempt (and per disabled notice), kept for a retention period.
CREATE TABLE webhook_attempts (
    id               bigserial PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    seq              bigint,                 -- NULL for a notice
    message_id       text NOT NULL,          -- webhook-id = the CloudEvent id
    attempt          integer NOT NULL,       -- 1 for the first try of this message
    at               timestamptz NOT NULL DEFAULT now(),
    status           integer,                -- HTTP status; NULL when there was no response
    error            text,
    duration_ms      double precision NOT NULL,
    delivered        boolean NOT NULL,
    worker           text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_subscription ON webhook_attempts (subscription_id, id);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
