"""Reading what the sink archived, for exactly-once checks.

``archived_values`` lists the final data files under ``topics.dir`` as a reader would (Athena,
Spark and DuckDB list the prefix) and returns every line of every file; ``check_exactly_once``
compares that multiset with what was produced.
"""

from __future__ import annotations

import collections
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass

from s3sink.commitlog import ROOT, Marker, seq_of
from s3sink.storage.base import Storage


def read_lines(storage: Storage, key: str) -> list[bytes]:
    data, _ = storage.get(key)
    if key.endswith(".gz"):
        data = gzip.decompress(data)
    elif key.endswith(".zst"):
        import pyarrow as pa

        data = pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    return [line for line in data.split(b"\n") if line]


def archived_lines(storage: Storage, topics_dir: str, topic: str) -> list[bytes]:
    out: list[bytes] = []
    for info in storage.list(f"{topics_dir}/{topic}/"):
        out.extend(read_lines(storage, info.key))
    return out


def markers(storage: Storage, topic: str, partition: int) -> list[Marker]:
    prefix = f"{ROOT}/log/{topic}/{partition}/"
    out = []
    for info in storage.list(prefix):
        if seq_of(info.key) is not None:
            data, _ = storage.get(info.key)
            out.append(Marker.decode(data, info.key))
    return out


def staging_left(storage: Storage) -> list[str]:
    return [i.key for i in storage.list(f"{ROOT}/staging/")]


@dataclass
class ExactlyOnce:
    produced: int
    archived: int
    missing: list[str]
    duplicates: list[str]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.unexpected)

    def __str__(self) -> str:
        return (
            f"produced {self.produced}, archived {self.archived}, missing {len(self.missing)} "
            f"{self.missing[:5]}, duplicates {len(self.duplicates)} {self.duplicates[:5]}, "
            f"unexpected {len(self.unexpected)} {self.unexpected[:5]}"
        )


def check_exactly_once(produced_ids: Iterable[str], archived_ids: Iterable[str]) -> ExactlyOnce:
    want = collections.Counter(produced_ids)
    got = collections.Counter(archived_ids)
    missing = sorted(k for k in want if got[k] < want[k])
    duplicates = sorted(k for k in got if got[k] > max(1, want.get(k, 0)))
    unexpected = sorted(k for k in got if k not in want)
    return ExactlyOnce(sum(want.values()), sum(got.values()), missing, duplicates, unexpected)


def ids_of(lines: Iterable[bytes], field: str = "id") -> list[str]:
    return [str(json.loads(line)[field]) for line in lines]
