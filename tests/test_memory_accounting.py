"""What ``buffer.memory.bytes`` counts beyond the open files: the resident set measured against
what the budget counts (:class:`ResidentGauge`), and S3 part buffers (in flight and being
filled) sharing a limit set from the budget."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

import pytest

from s3sink.memory import (
    PREFETCH_COST,
    ResidentGauge,
    prefetch_bytes,
    resident_bytes,
)
from s3sink.storage.retry import RetryPolicy
from s3sink.storage.s3 import MIN_PART_SIZE, S3Credentials, S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from s3sink.local import S3Endpoint

MiB = 1024 * 1024


# -- the resident set --------------------------------------------------------------------------


def test_resident_bytes_reads_the_process() -> None:
    before = resident_bytes()
    assert before > 10 * MiB
    block = bytearray(64 * MiB)  # touched: zero-filled by the allocation
    assert resident_bytes() >= before + 48 * MiB
    del block


_GIVEN_BACK = """
import json
from s3sink.memory import configure_malloc, resident_bytes
MiB = 1024 * 1024
ok = configure_malloc()
before = resident_bytes()
blocks = [b"\\x01" * (8 * MiB) for _ in range(8)]  # above the threshold: own mappings
held = resident_bytes()
del blocks
print(json.dumps({"ok": ok, "before": before, "held": held, "after": resident_bytes()}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_large_blocks_are_given_back_when_freed() -> None:
    # a fresh interpreter: in the test process other threads (servers, pools of earlier
    # tests) allocate and free at the same time and move the resident set
    out = subprocess.run(
        [sys.executable, "-c", _GIVEN_BACK], capture_output=True, text=True, check=True, timeout=60
    )
    r = json.loads(out.stdout)
    assert r["ok"]
    assert r["held"] >= r["before"] + 48 * MiB
    assert r["after"] < r["before"] + 16 * MiB


def test_prefetch_is_charged_at_its_real_cost() -> None:
    conf = {"queued.max.messages.kbytes": 8192, "fetch.max.bytes": 4 * MiB}
    assert prefetch_bytes(conf) == PREFETCH_COST * 12 * MiB
    assert prefetch_bytes({"fetch.max.bytes": "x"}) == PREFETCH_COST * (64 * MiB + 52_428_800)


class FakeRss:
    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_gauge_takes_what_the_budget_does_not_count_out_of_it() -> None:
    rss = FakeRss(300 * MiB)
    gauge = ResidentGauge(baseline=100 * MiB, read=rss)
    # 300 resident - 100 at start - 50 counted: 150 held elsewhere (librdkafka, allocators)
    assert gauge.files_limit(256 * MiB, 36 * MiB, 50 * MiB) == 106 * MiB
    assert gauge.overhead == 150 * MiB


def test_gauge_never_goes_below_the_prefetch_estimate_or_a_quarter() -> None:
    rss = FakeRss(110 * MiB)
    gauge = ResidentGauge(baseline=100 * MiB, read=rss)
    assert gauge.files_limit(256 * MiB, 36 * MiB, 5 * MiB) == 220 * MiB
    rss.value = 1000 * MiB
    assert gauge.files_limit(256 * MiB, 36 * MiB, 5 * MiB) == 64 * MiB


def test_gauge_rises_at_once_and_falls_slowly() -> None:
    rss = FakeRss(300 * MiB)
    gauge = ResidentGauge(baseline=100 * MiB, read=rss)
    gauge.files_limit(256 * MiB, 0, 0)
    assert gauge.overhead == 200 * MiB
    rss.value = 100 * MiB
    gauge.files_limit(256 * MiB, 0, 0)
    assert 150 * MiB < gauge.overhead < 200 * MiB
    for _ in range(100):
        gauge.files_limit(256 * MiB, 0, 0)
    assert gauge.overhead < MiB


def test_gauge_without_a_reading_uses_the_estimate() -> None:
    gauge = ResidentGauge(baseline=100 * MiB, read=lambda: 0)
    assert gauge.files_limit(256 * MiB, 36 * MiB, 500 * MiB) == 220 * MiB


# -- S3 part buffers -----------------------------------------------------------------------------


def _storage(endpoint: S3Endpoint, bucket: str, **kw: Any) -> S3Storage:
    return S3Storage(
        bucket,
        f"mem-{uuid.uuid4().hex[:8]}",
        endpoint_url=endpoint.url,
        region=endpoint.region,
        path_style=True,
        credentials=S3Credentials(endpoint.access_key, endpoint.secret_key),
        retry=RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01),
        **kw,
    )


def test_part_size_shares_the_limit_between_open_uploads(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    s3 = _storage(s3_endpoint, s3_bucket, part_size=25 * MiB)
    try:
        assert s3.current_part_size() == 25 * MiB  # no limit: the configured size
        s3.set_memory_limit(200 * MiB)
        uploads = [s3.open_upload(f"u{i}") for i in range(8)]
        # half the limit for the buffers of 8 open uploads
        assert s3.current_part_size() == 200 * MiB // 2 // 8
        more = [s3.open_upload(f"v{i}") for i in range(100)]
        assert s3.current_part_size() == MIN_PART_SIZE  # never below S3's minimum
        # parts grow with the object: 10,000 parts are never reached
        assert s3.current_part_size(20_000 * MiB) == 20 * MiB
        for u in more:
            u.abort()
        assert s3.current_part_size() == 200 * MiB // 2 // 8
        s3.set_memory_limit(10_000 * MiB)
        assert s3.current_part_size() == 25 * MiB  # never above s3.part.size
        for u in uploads:
            u.abort()
    finally:
        s3.close()


class _Wrapped:
    def __init__(self, real: Any, **overrides: Any) -> None:
        self._real = real
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._real, name)


def test_parts_in_flight_are_counted_and_bounded_by_the_limit(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    s3 = _storage(s3_endpoint, s3_bucket, part_size=25 * MiB, max_concurrency=8)
    real_upload_part = s3.client.upload_part
    release = threading.Event()

    def held_upload_part(**kw: Any) -> Any:
        release.wait(timeout=20)
        return real_upload_part(**kw)

    s3.client = cast("S3Client", _Wrapped(s3.client, upload_part=held_upload_part))
    # 24 MiB: 12 for parts in flight (two 5 MiB parts), 12 for the buffers of 3 open uploads
    s3.set_memory_limit(24 * MiB)
    data = os.urandom(4 * MIN_PART_SIZE + 123)
    upload = s3.open_upload("bounded")
    others = [s3.open_upload("other-1"), s3.open_upload("other-2")]
    assert s3.current_part_size() == MIN_PART_SIZE
    done = threading.Event()

    def writer() -> None:
        view = memoryview(data)
        for start in range(0, len(data), MiB):
            upload.write(view[start : start + MiB])
        done.set()

    t = threading.Thread(target=writer)
    try:
        t.start()
        deadline = time.monotonic() + 10
        while s3.memory_bytes() < 2 * MIN_PART_SIZE and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert s3.memory_bytes() == 2 * MIN_PART_SIZE
        assert not done.is_set()  # the third part waits for room
        release.set()
        t.join(timeout=30)
        assert done.is_set()
        info = upload.complete()
        assert info.size == len(data)
        assert s3.get("bounded")[0] == data
        assert s3.memory_bytes() == 0
        for o in others:
            o.abort()
    finally:
        release.set()
        t.join(timeout=30)
        s3.close()


def test_one_part_always_goes_even_above_the_limit(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    s3 = _storage(s3_endpoint, s3_bucket, part_size=MIN_PART_SIZE)
    try:
        s3.set_memory_limit(MiB)  # less than one part: parts go one at a time
        data = os.urandom(3 * MIN_PART_SIZE + 1)
        upload = s3.open_upload("tiny-limit")
        upload.write(data)
        upload.complete()
        assert s3.get("tiny-limit")[0] == data
        assert s3.memory_bytes() == 0
    finally:
        s3.close()


@pytest.mark.parametrize("limit", [None, 64 * MiB])
def test_open_uploads_are_counted_until_completed_or_aborted(
    s3_endpoint: S3Endpoint, s3_bucket: str, limit: int | None
) -> None:
    s3 = _storage(s3_endpoint, s3_bucket)
    try:
        s3.set_memory_limit(limit)
        a, b, c = (s3.open_upload(k) for k in ("a", "b", "c"))
        assert s3._open_uploads == 3
        a.write(b"x")
        a.complete()
        b.abort()
        b.abort()
        assert s3._open_uploads == 1
        c.complete()
        assert s3._open_uploads == 0
    finally:
        s3.close()
