"""The login page and the session cookie it sets (when the server has an access token)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse

from app.api.deps import SettingsDep
from app.schemas import BAD_BODY, ErrorOut, LoginIn
from app.security import LOGIN_PAGE, SESSION_COOKIE, make_session, token_matches

router = APIRouter(tags=["access"])


@router.get("/login", include_in_schema=False)
def login_page() -> FileResponse:
    return FileResponse(LOGIN_PAGE, headers={"Cache-Control": "no-store"})


@router.post(
    "/api/login",
    status_code=204,
    responses={
        **BAD_BODY,
        401: {"model": ErrorOut, "description": "Wrong token"},
        409: {"model": ErrorOut, "description": "The server has no access token to check"},
    },
)
def login(body: LoginIn, request: Request, settings: SettingsDep) -> Response:
    """Exchange the access token for a session cookie (the dashboard's login)."""
    if settings.token is None:
        raise HTTPException(409, detail="this server has no access token: nothing to log in to")
    if not token_matches(body.token, settings.token):
        raise HTTPException(401, detail="wrong token")
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE,
        make_session(settings.token.get_secret_value(), settings.session_hours),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/api/logout", status_code=204)
def logout() -> Response:
    """Forget the session cookie."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
