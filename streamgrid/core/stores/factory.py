"""A store URL to its adapter; each adapter's module is imported only here,
and only when that adapter is the one asked for (a capture pod writing to S3
loads neither boto3 nor the directory store's tempfile)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from .base import ObjectStore, StoreError, store_error_text


def open_object_store(
    store_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str = "us-east-1",
    lite: bool = False,
) -> ObjectStore:
    """``file:///path``, a plain path, or ``s3://bucket[/prefix]``. Raises StoreError.

    ``lite``: with both S3 keys given, the standard-library client
    (s3lite.py, ~20 MB less per process than boto3); without keys,
    boto3 all the same, for its credential chain (IRSA, instance profiles).
    """
    try:
        parts = urlsplit(store_url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise StoreError(store_error_text(exc)) from None
    if parts.scheme in ("", "file"):
        # Here too: tempfile, which it writes with, brings shutil, bz2 and lzma.
        from .directory import DirectoryObjectStore

        return DirectoryObjectStore(Path(parts.path if parts.scheme else store_url))
    if parts.scheme != "s3":
        raise StoreError(f"unsupported store URL scheme {parts.scheme!r}: use a path or s3://")
    if not parts.netloc:
        raise StoreError("s3 store URL needs a bucket: s3://bucket[/prefix]")
    if lite and s3_access_key_id and s3_secret_access_key:
        from .s3lite import S3LiteClient, S3LiteObjectStore

        endpoint = s3_endpoint_url or f"https://s3.{s3_region}.amazonaws.com"
        lite_client = S3LiteClient(
            endpoint, s3_access_key_id, s3_secret_access_key, region=s3_region
        )
        return S3LiteObjectStore(lite_client, parts.netloc, parts.path)
    from .s3_boto3 import S3ObjectStore, boto3_client

    client = boto3_client(s3_endpoint_url, s3_access_key_id, s3_secret_access_key, s3_region)
    return S3ObjectStore(client, parts.netloc, parts.path)
