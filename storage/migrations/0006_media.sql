-- Media kept as evidence: camera snapshots, photos and videos of field reports.
-- The bytes live on disk under <data dir>/media, named by their SHA-256 (so the same bytes
-- are stored once however often they are cited); a row says what they are and whose they are.
CREATE TABLE media (
    id            text PRIMARY KEY,              -- 'MD' + time-ordered id
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type  text NOT NULL,                 -- image/jpeg, video/mp4, …
    size          bigint NOT NULL CHECK (size >= 0),
    kind          text NOT NULL,                 -- snapshot, report_photo, report_video, …
    device_id     text,                          -- the device that took it, if any
    grid_code     text,                          -- whose it is: the API serves it within scope
    event_id      text,                          -- the grid event it is evidence of, once known
    taken_at      timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_sha256 ON media (sha256);
CREATE INDEX media_event ON media (event_id) WHERE event_id IS NOT NULL;
