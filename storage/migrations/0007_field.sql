-- The grid worker's side: when a device (a patrol tag) was registered, the response
-- resources near an incident, and the field reports people filed.

-- A patrol tag is due from the first period after its registration (detectors/patrol.py):
-- registry merges never touch this column, so it keeps the first import's time.
ALTER TABLE devices ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

-- Micro fire stations (微型消防站), fire hydrants (with the pressure sensor on them, if any)
-- and duty teams: who can get to an incident, and whether the water is there.
CREATE TABLE resources (
    resource_id       text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('micro_fire_station', 'fire_hydrant', 'duty_team')),
    name              text NOT NULL DEFAULT '',
    lat               double precision,
    lon               double precision,
    address           text NOT NULL DEFAULT '',
    grid_code         text REFERENCES grids (code),
    grid_code_derived boolean NOT NULL DEFAULT false,
    contact           text NOT NULL DEFAULT '',
    phone             text NOT NULL DEFAULT '',
    sensor_id         text,               -- a hydrant's water_pressure_sensor device id
    detail            jsonb NOT NULL DEFAULT '{}',   -- e.g. {"staff": 6, "vehicles": 1}
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resources_grid ON resources (grid_code);
CREATE INDEX resources_kind ON resources (kind);

-- Field reports (发现上报) as filed: the event they became and the media they carried.
CREATE TABLE field_reports (
    id            text PRIMARY KEY,            -- 'FR' + time-ordered id
    event_id      text NOT NULL REFERENCES grid_events (id),
    reporter_id   text NOT NULL,               -- the member id of the token, else its id
    reporter_role text NOT NULL,
    token_id      text NOT NULL,
    grid_code     text NOT NULL,
    ancestors     text[] NOT NULL DEFAULT '{}',
    category      text NOT NULL,
    type          text NOT NULL,
    severity      text NOT NULL,
    description   text NOT NULL DEFAULT '',
    site          text NOT NULL DEFAULT '',
    location      jsonb NOT NULL DEFAULT '{}', -- {lat, lon, address}
    media_ids     text[] NOT NULL DEFAULT '{}',
    reported_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX field_reports_grid ON field_reports (grid_code, reported_at);
CREATE INDEX field_reports_event ON field_reports (event_id);
