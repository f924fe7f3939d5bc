"""Failpoints for crash tests: ``S3SINK_FAILPOINT=<name>`` kills the process at that step.

``S3SINK_FAILPOINT_HIT=<n>`` (default 1) kills at the n-th time the step is reached. Names:
``mid_multipart_upload`` (parts uploaded, upload not completed), ``after_staging_upload``
(all files of a commit in staging, no marker yet), ``after_marker`` (marker created, nothing
published), ``mid_publish`` (first file published, the rest not), ``before_kafka_commit``
(published, offset not committed to Kafka).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

NAMES = frozenset(
    {
        "mid_multipart_upload",
        "after_staging_upload",
        "after_marker",
        "mid_publish",
        "before_kafka_commit",
    }
)

_target = os.environ.get("S3SINK_FAILPOINT", "")
_hits_left = [int(os.environ.get("S3SINK_FAILPOINT_HIT", "1") or "1")]
_lock = threading.Lock()

if _target and _target not in NAMES:
    raise SystemExit(f"S3SINK_FAILPOINT={_target!r} is not a failpoint; use one of {sorted(NAMES)}")


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is the armed failpoint (and its hit count
    is reached)."""
    if name != _target:
        return
    with _lock:
        _hits_left[0] -= 1
        if _hits_left[0] > 0:
            return
    sys.stderr.write(f"s3sink: failpoint {name} reached, killing the process\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
