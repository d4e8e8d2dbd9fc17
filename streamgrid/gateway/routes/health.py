"""``GET /healthz``: served without a token (auth.py's open paths)."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas import Health

router = APIRouter()


@router.get("/healthz", responses={200: {"description": "The gateway answers."}})
async def healthz() -> Health:
    return Health(status="ok")
