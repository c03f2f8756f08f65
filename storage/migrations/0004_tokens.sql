-- API access: bearer tokens (stored hashed) and the audit log of what callers did.

CREATE TABLE api_tokens (
    id            text PRIMARY KEY,                 -- the public part of gw_<id>_<secret>
    name          text NOT NULL,                    -- who or what holds it, for people
    role          text NOT NULL CHECK (role IN (
                      'viewer', 'grid_member', 'village_lead', 'town_centre',
                      'county_centre', 'admin')),
    scope         text NOT NULL,                    -- a grid code (its subtree), or '*' (admin)
    member_id     text,                             -- the actor id of its actions, when a person
    hash          bytea NOT NULL,                   -- SHA-256 of the whole token text
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CHECK (scope <> '*' OR role = 'admin')
);
CREATE INDEX api_tokens_active_admin ON api_tokens (role) WHERE revoked_at IS NULL;

-- Append-only: every action taken through the API or on tokens, refused ones too.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    token_id   text,                                -- NULL for the command line
    actor      text NOT NULL,                       -- actor id (member id or token id), or 'cli'
    action     text NOT NULL,                       -- workflow action, token.create, …
    target     text NOT NULL,                       -- event id, token id, …
    outcome    text NOT NULL CHECK (outcome IN ('ok', 'refused')),
    status     integer,                             -- the HTTP status answered, when over HTTP
    detail     jsonb NOT NULL DEFAULT '{}'          -- reason, error code, states; never a secret
);
CREATE INDEX audit_log_target ON audit_log (target, id);
CREATE INDEX audit_log_at ON audit_log (at);
