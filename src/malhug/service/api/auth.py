"""Token authentication for write operations; reads are open.

A write presents `Authorization: Bearer <token>`, compared with the configured token in
constant time. With no token configured every write is refused (403), so a server started
without one can be looked at but never changed.
"""
from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

NO_TOKEN_MESSAGE = ("write operations are disabled: no API token is configured; set MALHUG_API_TOKEN "
                    "(or start `malhug serve --api-token ...`) to enable them")
BAD_TOKEN_MESSAGE = "a valid API token is required: Authorization: Bearer <token>"


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison; an unset token matches nothing."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))


def check_write_token(expected: str | None, presented: str | None) -> None:
    """Raise the HTTP error a write without a valid token gets."""
    if not expected:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NO_TOKEN_MESSAGE)
    if not token_matches(expected, presented):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, BAD_TOKEN_MESSAGE,
                            headers={"WWW-Authenticate": 'Bearer realm="malhug"'})


_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="the API token (MALHUG_API_TOKEN); needed by write operations only")


def require_writer(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """FastAPI dependency of every write route (also declares the scheme in the OpenAPI spec)."""
    check_write_token(request.app.state.settings.api_token, credentials.credentials if credentials else None)
