"""Settings every process shares: where the store is, how to log.

Each process has one settings object (pydantic-settings, prefix ``STREAMGRID_``)
read once at start-up; they all derive from ``CommonSettings``.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .store import FrameStore, open_object_store


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMGRID_", extra="ignore")

    store_url: str = "./streamgrid-data"
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    log_level: str = "INFO"

    def open_store(self) -> FrameStore:
        secret = self.s3_secret_access_key
        return FrameStore(
            open_object_store(
                self.store_url,
                s3_endpoint_url=self.s3_endpoint_url,
                s3_access_key_id=self.s3_access_key_id,
                s3_secret_access_key=secret.get_secret_value() if secret else None,
                s3_region=self.s3_region,
            )
        )
