"""Opaque ids in the Claude API's style: a prefix and 24 base-62 characters (`msg_01XFDUDY…`)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


def new_id(prefix: str) -> str:
    return f"{prefix}_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))
