"""Objects in an S3 bucket through boto3: for AWS's credential chain (IRSA,
instance profiles) and the processes that do not mind its memory. In the
package only the factory imports this module, and only for this adapter:
boto3 costs a process ~22 MB (s3lite.py says why that matters)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .base import ObjectStore, StoreError, store_error_text

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@contextmanager
def _client_errors() -> Iterator[None]:
    """botocore's errors as StoreError: the server's answer (ClientError) or
    none (EndpointConnectionError, timeouts, ...), in the client's own words."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise StoreError(store_error_text(exc)) from exc


def boto3_client(
    endpoint_url: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    region: str,
) -> S3Client:
    """A client as the stores use it: path-style, short timeouts, 3 attempts.
    No keys: boto3's own credential chain."""
    try:
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region,
            config=Config(
                connect_timeout=5,
                read_timeout=15,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
    except (BotoCoreError, ValueError) as exc:  # ValueError: "Invalid endpoint: ..."
        raise StoreError(store_error_text(exc)) from exc


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket (MinIO, SeaweedFS, AWS), under an optional prefix."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _client_errors():
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type
            )

    def get(self, key: str) -> bytes | None:
        with _client_errors():
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            except self.client.exceptions.NoSuchKey:
                return None
            return response["Body"].read()

    def delete(self, key: str) -> None:
        with _client_errors():
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def list(self, prefix: str) -> Iterator[str]:
        with _client_errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :]

    def ensure_ready(self) -> None:
        with _client_errors():
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError:
                self.client.create_bucket(Bucket=self.bucket)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
