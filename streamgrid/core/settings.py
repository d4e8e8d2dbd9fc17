"""Settings every process shares: where the store is, how to log, where cameras may be.

Each process has one settings object (pydantic-settings, prefix ``STREAMGRID_``)
read once at start-up; they all derive from ``CommonSettings``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .sources import DEFAULT_DENY_CIDRS, SourcePolicy, parse_networks
from .stores.factory import open_object_store
from .stores.frames import FrameStore


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _networks(value: list[str]) -> list[str]:
    return [str(network) for network in parse_networks(value)]  # ValueError: which one


# Names, comma-separated in the environment.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
# Networks (10.0.0.0/8, or one address), comma-separated in the environment.
CidrList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_networks)]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMGRID_", extra="ignore")

    store_url: str = "./streamgrid-data"
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    log_level: str = "INFO"
    # Where cameras may be (core/sources.py): an address in a denied network is
    # refused; with an allow list, so is one in none of its networks. Setting
    # source_deny_cidrs replaces the built-in list (unspecified, link-local,
    # multicast, broadcast): keep those in yours.
    source_allow_cidrs: CidrList = []
    source_deny_cidrs: CidrList = list(DEFAULT_DENY_CIDRS)
    source_deny_loopback: bool = False  # the cluster sets it: loopback is the pod itself
    # Set by Kubernetes in every pod: the API server's ClusterIP, never a camera.
    kubernetes_service_host: str | None = Field(None, validation_alias="KUBERNETES_SERVICE_HOST")

    def source_policy(self) -> SourcePolicy:
        api_server = [self.kubernetes_service_host] if self.kubernetes_service_host else []
        return SourcePolicy.from_cidrs(
            self.source_allow_cidrs,
            self.source_deny_cidrs,
            deny_loopback=self.source_deny_loopback,
            deny_hosts=api_server,
        )

    def lite_s3_client(self) -> bool:
        """Whether to use core/stores/s3lite.py rather than boto3 when S3 keys are given."""
        return False

    def open_store(self) -> FrameStore:
        secret = self.s3_secret_access_key
        return FrameStore(
            open_object_store(
                self.store_url,
                s3_endpoint_url=self.s3_endpoint_url,
                s3_access_key_id=self.s3_access_key_id,
                s3_secret_access_key=secret.get_secret_value() if secret else None,
                s3_region=self.s3_region,
                lite=self.lite_s3_client(),
            )
        )
