"""Dependency aliases: what a route needs, taken from `app.state` (built once in `create_app`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sijo.config import Settings
from sijo.service import MessagesService


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _service(request: Request) -> MessagesService:
    service: MessagesService = request.app.state.service
    return service


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[MessagesService, Depends(_service)]
