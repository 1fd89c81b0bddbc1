"""Shapes of the dashboard's login."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, StringConstraints


class LoginIn(BaseModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=500)]
