"""Standard Webhooks secrets and signatures: what a receiver checks each delivery against."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

from outputs.cloudevents import CONTENT_TYPE

SECRET_PREFIX = "whsec_"
USER_AGENT = "gridwatch-webhooks/1"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """The secret if it is ``whsec_`` + base64 of 24–64 bytes; ValueError otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a secret's key must be 24 to 64 bytes")
    return secret


def sign_headers(signer: Webhook, msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers (plus content type) for one attempt."""
    return {
        "content-type": CONTENT_TYPE,
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signer.sign(msg_id, at, body.decode()),
    }
