"""The bearer token that state-changing service calls (add_items, and feedback later) need.

Read from $INTEREST_SERVICE_TOKEN; when unset, made once and kept in a file only its owner can
read (its location is logged, the token never), so `make serve` works from a fresh clone.
"""
from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_ENV = "INTEREST_SERVICE_TOKEN"


def service_token(token_file: Path) -> str:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    if not token_file.is_file():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        log.warning("%s is not set: made a service token, in %s (send it as `Authorization: Bearer <token>`)",
                    TOKEN_ENV, token_file)
    return token_file.read_text().strip()


def authorised(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
