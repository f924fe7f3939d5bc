"""S3 helpers for tests: endpoints from the environment, boto3 clients, fresh buckets."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from s3sink.local.s3 import LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY, S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "S3Endpoint",
    "create_bucket",
    "endpoint_from_env",
    "error_status",
    "s3_client",
    "unique_bucket_name",
]


def endpoint_from_env() -> S3Endpoint | None:
    """The endpoint ``S3_ENDPOINT_URL`` (and the usual ``AWS_*`` variables) point at, if set."""
    url = os.environ.get("S3_ENDPOINT_URL")
    if not url:
        return None
    return S3Endpoint(
        url=url,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", LOCAL_ACCESS_KEY),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET_KEY),
        region=os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION),
    )


def s3_client(endpoint: S3Endpoint, **config: Any) -> S3Client:
    """A boto3 S3 client for ``endpoint`` (path-style, few retries so failures surface fast)."""
    settings: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "retries": {"max_attempts": 3, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 60,
        "max_pool_connections": 32,
    }
    settings.update(config)
    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
        config=Config(**settings),
    )


def unique_bucket_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def create_bucket(endpoint: S3Endpoint, name: str | None = None) -> str:
    """Create a bucket (unique name unless given) and return its name."""
    bucket = name or unique_bucket_name()
    client = s3_client(endpoint)
    if endpoint.region == "us-east-1":
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": endpoint.region},  # type: ignore[typeddict-item]
        )
    return bucket


def error_status(exc: ClientError) -> int:
    """The HTTP status of a failed S3 call (412 for a lost conditional write)."""
    status: int = exc.response["ResponseMetadata"]["HTTPStatusCode"]
    return status
