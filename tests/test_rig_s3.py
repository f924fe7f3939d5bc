"""The rig's S3 endpoints are real HTTP S3 servers with the semantics the commit protocol needs.

Multipart uploads and conditional writes (``If-None-Match: *``, ``If-Match: <etag>``) are checked
on moto and on MinIO; the concurrent race of conditional creates only on MinIO, whose
conditional writes are atomic (moto checks the condition and writes in two steps).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from s3sink.local import S3Endpoint
from tests.rig.s3 import create_bucket, error_status, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    endpoint: S3Endpoint
    bucket: str

    def client(self) -> S3Client:
        return s3_client(self.endpoint)


@pytest.fixture(params=["moto", pytest.param("minio", marks=pytest.mark.minio)])
def target(request: pytest.FixtureRequest) -> Target:
    endpoint: S3Endpoint = request.getfixturevalue(f"{request.param}_endpoint_")
    return Target(endpoint, create_bucket(endpoint))


@pytest.fixture
def moto_endpoint_(s3_endpoint: S3Endpoint) -> S3Endpoint:
    return s3_endpoint


@pytest.fixture
def minio_endpoint_(minio_endpoint: S3Endpoint) -> S3Endpoint:
    return minio_endpoint


def test_multipart_upload_round_trips(target: Target) -> None:
    client = target.client()
    parts_data = [bytes([i]) * (5 * MiB) for i in (1, 2)] + [b"tail" * 1000]
    upload = client.create_multipart_upload(Bucket=target.bucket, Key="big/object.bin")
    upload_id = upload["UploadId"]
    # No Prefix: MinIO filters uploads by an exact key only, not by a key prefix ("big/").
    pending = client.list_multipart_uploads(Bucket=target.bucket)
    assert [u["UploadId"] for u in pending.get("Uploads", [])] == [upload_id]

    parts: list[CompletedPartTypeDef] = []
    for number, data in enumerate(parts_data, start=1):
        part = client.upload_part(
            Bucket=target.bucket, Key="big/object.bin", UploadId=upload_id,
            PartNumber=number, Body=data,
        )  # fmt: skip
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    # Not visible before it is completed.
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket=target.bucket, Key="big/object.bin")
    assert error_status(missing.value) == 404

    done = client.complete_multipart_upload(
        Bucket=target.bucket, Key="big/object.bin", UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )  # fmt: skip
    assert done["ETag"].strip('"').endswith("-3")
    body = client.get_object(Bucket=target.bucket, Key="big/object.bin")["Body"].read()
    assert body == b"".join(parts_data)
    assert client.list_multipart_uploads(Bucket=target.bucket).get("Uploads", []) == []


def test_aborted_multipart_upload_leaves_nothing(target: Target) -> None:
    client = target.client()
    upload_id = client.create_multipart_upload(Bucket=target.bucket, Key="gone")["UploadId"]
    client.upload_part(
        Bucket=target.bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"x" * 1024
    )
    client.abort_multipart_upload(Bucket=target.bucket, Key="gone", UploadId=upload_id)
    assert client.list_multipart_uploads(Bucket=target.bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=target.bucket).get("KeyCount") == 0


def test_if_none_match_star_refuses_an_existing_key(target: Target) -> None:
    client = target.client()
    created = client.put_object(Bucket=target.bucket, Key="marker", Body=b"first", IfNoneMatch="*")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200

    with pytest.raises(ClientError) as lost:
        client.put_object(Bucket=target.bucket, Key="marker", Body=b"second", IfNoneMatch="*")
    assert error_status(lost.value) == 412
    body = client.get_object(Bucket=target.bucket, Key="marker")["Body"].read()
    assert body == b"first"


def test_if_none_match_star_on_multipart_completion(target: Target) -> None:
    client = target.client()
    client.put_object(Bucket=target.bucket, Key="taken", Body=b"first")
    upload_id = client.create_multipart_upload(Bucket=target.bucket, Key="taken")["UploadId"]
    part = client.upload_part(
        Bucket=target.bucket, Key="taken", UploadId=upload_id, PartNumber=1, Body=b"second"
    )
    with pytest.raises(ClientError) as lost:
        client.complete_multipart_upload(
            Bucket=target.bucket, Key="taken", UploadId=upload_id, IfNoneMatch="*",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )  # fmt: skip
    assert error_status(lost.value) == 412
    assert client.get_object(Bucket=target.bucket, Key="taken")["Body"].read() == b"first"


def test_if_match_with_a_stale_etag_is_refused(target: Target) -> None:
    client = target.client()
    first = client.put_object(Bucket=target.bucket, Key="checkpoint", Body=b"v1")["ETag"]
    second = client.put_object(Bucket=target.bucket, Key="checkpoint", Body=b"v2", IfMatch=first)[
        "ETag"
    ]
    assert second != first

    with pytest.raises(ClientError) as stale:
        client.put_object(Bucket=target.bucket, Key="checkpoint", Body=b"v3", IfMatch=first)
    assert error_status(stale.value) == 412
    current = client.get_object(Bucket=target.bucket, Key="checkpoint")
    assert current["Body"].read() == b"v2"
    assert current["ETag"] == second


@pytest.mark.minio
def test_racing_conditional_creates_have_exactly_one_winner(
    minio_endpoint: S3Endpoint, minio_bucket: str
) -> None:
    rounds = 200
    clients = [s3_client(minio_endpoint), s3_client(minio_endpoint)]
    start = threading.Barrier(2)
    outcomes: list[list[int]] = [[0] * rounds, [0] * rounds]

    def racer(who: int) -> None:
        for n in range(rounds):
            start.wait(timeout=30)
            try:
                clients[who].put_object(
                    Bucket=minio_bucket, Key=f"race/{n:04d}", Body=b"writer-%d" % who,
                    IfNoneMatch="*",
                )  # fmt: skip
                outcomes[who][n] = 200
            except ClientError as exc:
                outcomes[who][n] = error_status(exc)

    threads = [threading.Thread(target=racer, args=(who,)) for who in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads)

    for n in range(rounds):
        pair = (outcomes[0][n], outcomes[1][n])
        assert sorted(pair) in ([200, 409], [200, 412]), f"round {n}: {pair}"
        winner = pair.index(200)
        body = clients[0].get_object(Bucket=minio_bucket, Key=f"race/{n:04d}")["Body"].read()
        assert body == b"writer-%d" % winner, f"round {n}: the loser's bytes were stored"
