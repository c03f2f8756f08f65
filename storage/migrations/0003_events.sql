-- Grid events (网格事件): incidents built from detector hits, and what happened to them.

CREATE TABLE grid_events (
    id               text PRIMARY KEY,                -- 'GE' + time-ordered id
    -- while set, hits with this key join the event; one open holder per key at a time
    correlation_key  text,
    grid_code        text,                            -- basic grid, or NULL when unplaced
    ancestors        text[] NOT NULL DEFAULT '{}',    -- county, town, village codes
    category         text NOT NULL,                   -- fire|electrical|water|video|device
    type             text NOT NULL,                   -- smoke_alarm, pressure_drop, …
    severity         text NOT NULL,                   -- red|orange|yellow|blue
    state            text NOT NULL,                   -- workflow state
    site             text NOT NULL DEFAULT '',
    location         jsonb NOT NULL DEFAULT '{}',     -- {lat, lon, address}
    device_ids       text[] NOT NULL DEFAULT '{}',
    types            text[] NOT NULL DEFAULT '{}',    -- every hit type seen in this event
    active_conditions text[] NOT NULL DEFAULT '{}',   -- detector conditions still raised
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    alarm_count      integer NOT NULL DEFAULT 0,
    evidence         jsonb NOT NULL DEFAULT '[]',     -- latest hits' readings, snapshots
    workflow         jsonb NOT NULL,                  -- alerts.workflow_state.WorkflowState
    next_due         timestamptz,                     -- the deadline the sweeper watches
    version          integer NOT NULL DEFAULT 1,      -- optimistic concurrency between workers
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX grid_events_one_open_per_key ON grid_events (correlation_key)
    WHERE correlation_key IS NOT NULL;
CREATE INDEX grid_events_open ON grid_events (state, severity)
    WHERE state NOT IN ('closed', 'false_alarm');
CREATE INDEX grid_events_grid ON grid_events (grid_code, first_seen);
CREATE INDEX grid_events_ancestors ON grid_events USING gin (ancestors);
CREATE INDEX grid_events_due ON grid_events (next_due) WHERE next_due IS NOT NULL;
CREATE INDEX grid_events_first_seen ON grid_events (first_seen);

-- Append-only: who did what to an event, when and why.
CREATE TABLE grid_event_history (
    id        bigserial PRIMARY KEY,
    event_id  text NOT NULL REFERENCES grid_events (id),
    at        timestamptz NOT NULL,
    action    text NOT NULL,
    actor_id  text NOT NULL,
    entry     jsonb NOT NULL                          -- alerts.workflow_state.HistoryEntry
);
CREATE INDEX grid_event_history_event ON grid_event_history (event_id, id);

-- Every change of every event: the source of the live stream, the MQTT feed and webhooks.
-- `seq` is monotonic, so a client resumes from the last one it saw. Sequence numbers are
-- taken at insert, not at commit, so a reader (outputs/log_reader.py) holds back at a gap
-- in `seq` until every transaction that could still fill it has ended, and by default also
-- reads only rows whose transaction `tx` is older than every one still running.
CREATE TABLE event_log (
    seq         bigserial PRIMARY KEY,
    tx          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id    text NOT NULL,
    change      text NOT NULL,        -- opened|updated|state_changed|escalated|closed
    at          timestamptz NOT NULL DEFAULT now(),
    grid_code   text,
    ancestors   text[] NOT NULL DEFAULT '{}',
    severity    text NOT NULL,
    payload     jsonb NOT NULL        -- the grid event as it was after the change
);
CREATE INDEX event_log_event ON event_log (event_id, seq);

-- Detector state per device, saved in the same transaction as the readings it has seen.
CREATE TABLE detector_state (
    device_id   text PRIMARY KEY,
    state       jsonb NOT NULL,
    next_wake   timestamptz,          -- earliest time a tick could raise something
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX detector_state_wake ON detector_state (next_wake) WHERE next_wake IS NOT NULL;

-- Safety index (平安指数) per grid node and day, kept so areas and trends can be compared.
CREATE TABLE safety_index_daily (
    grid_code   text NOT NULL,
    day         date NOT NULL,
    score       double precision NOT NULL,
    indicators  jsonb NOT NULL,
    PRIMARY KEY (grid_code, day)
);
