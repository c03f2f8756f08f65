-- Broker accounts: one per registered device (user name = device id) and one for gridwatch
-- itself. Only mosquitto's PBKDF2-SHA512 hash is kept ($7$…), the same text its password
-- file holds, so the file can be written again at any time without knowing a password.

CREATE TABLE broker_accounts (
    username       text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('device', 'service')),
    password_hash  text NOT NULL CHECK (password_hash LIKE '$7$%'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz
);
