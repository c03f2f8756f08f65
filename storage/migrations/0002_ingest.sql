-- Ingest: what devices said, their latest state, and what was turned away.

-- Newest known state per device. Several workers update it; every column only moves forward
-- (GREATEST / newer-wins), so the order in which workers commit does not matter.
CREATE TABLE device_state (
    device_id    text PRIMARY KEY,
    last_seen    timestamptz,          -- arrival time of the newest accepted message
    last_ts      timestamptz,          -- device time of the newest reading
    last_seq     bigint,
    last_values  jsonb NOT NULL DEFAULT '{}',
    status       text,                 -- online / offline from the status topic
    status_at    timestamptz,
    messages     bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Device-side alarms and states, and online/offline status changes (kind = 'status').
CREATE TABLE device_events (
    device_id        text NOT NULL,
    ts               timestamptz NOT NULL,
    kind             text NOT NULL DEFAULT 'event',
    event            text NOT NULL,
    seq              bigint,
    detail           jsonb NOT NULL DEFAULT '{}',
    received_at      timestamptz NOT NULL,
    ts_from_arrival  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (device_id, ts, event)
);
CREATE INDEX device_events_received ON device_events (received_at);

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    device_id    text,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload      bytea NOT NULL,
    replayed_at  timestamptz
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);
CREATE INDEX dead_letters_device ON dead_letters (device_id);

-- Rejections counted per device and reason; outlives dead-letter retention.
CREATE TABLE reject_counts (
    device_id  text NOT NULL,          -- '' when the topic named no device
    reason     text NOT NULL,
    count      bigint NOT NULL DEFAULT 0,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (device_id, reason)
);
