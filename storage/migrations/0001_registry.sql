-- Registry: the grid tree and the devices in it.
CREATE TABLE grids (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('county', 'town', 'village', 'grid')),
    parent      text REFERENCES grids (code) DEFERRABLE INITIALLY DEFERRED,
    members     jsonb NOT NULL DEFAULT '[]',
    geometry    jsonb,
    -- codes from the county down to the parent: "subtree of X" is `X = ANY(ancestors) OR code = X`
    ancestors   text[] NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grids_parent ON grids (parent);
CREATE INDEX grids_ancestors ON grids USING gin (ancestors);

CREATE TABLE devices (
    device_id          text PRIMARY KEY,
    type               text NOT NULL,
    name               text NOT NULL DEFAULT '',
    lat                double precision,
    lon                double precision,
    address            text NOT NULL DEFAULT '',
    site               text NOT NULL DEFAULT '',
    grid_code          text REFERENCES grids (code),
    grid_code_derived  boolean NOT NULL DEFAULT false,
    profile            jsonb NOT NULL DEFAULT '{}',
    rtsp_url           text,
    zones              jsonb,
    masks              jsonb,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_grid ON devices (grid_code);
CREATE INDEX devices_site ON devices (site);
