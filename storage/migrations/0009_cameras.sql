-- Cameras as the workers pulling them see them: one row per camera, written by the worker
-- holding its lease every video.lease_s, so that any worker's API can list every camera and
-- serve a recent frame of a camera another worker pulls.
CREATE TABLE camera_status (
    camera_id       text PRIMARY KEY,
    worker          text NOT NULL,
    state           text NOT NULL,            -- connecting | connected | disconnected | stopped
    fps_in          real NOT NULL DEFAULT 0,
    fps_analysed    real NOT NULL DEFAULT 0,
    frames_in       bigint NOT NULL DEFAULT 0,
    frames_dropped  bigint NOT NULL DEFAULT 0,
    reconnects      integer NOT NULL DEFAULT 0,
    last_frame_at   timestamptz,
    width           integer,
    height          integer,
    last_error      text,
    faults          text[] NOT NULL DEFAULT '{}', -- camera-health conditions raised now
    preview         bytea,                        -- newest frame as JPEG, video.preview_width wide
    preview_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
