"""API keys: `Authorization: Bearer <key>`, compared in constant time."""

import hmac
from collections.abc import Sequence

from pydantic import SecretStr


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_is_valid(presented: str | None, keys: Sequence[SecretStr]) -> bool:
    """Whether `presented` is one of `keys`; every key is compared, in constant time."""
    if presented is None:
        return False
    given = presented.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.get_secret_value().encode())
    return found
