"""``string`` (``org.apache.kafka.connect.storage.StringConverter``): UTF-8 text values.

The table has one column, ``value`` (string); a value that is not valid UTF-8 is a bad record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from formats.decoders.base import META_ENCODING, META_WRAPPED, Decoded, DecodedPart

if TYPE_CHECKING:
    from s3sink.records import RecordBatch

_META = {META_ENCODING: b"string", META_WRAPPED: b"1"}


class StringDecoder:
    def decode(self, batch: RecordBatch) -> Decoded:
        values = batch.values
        try:
            arr = pa.array(values, pa.binary()).cast(pa.string())
            rows = None
        except pa.ArrowInvalid:
            errors: dict[int, str] = {}
            keep: list[int] = []
            for i, v in enumerate(values):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        errors[i] = f"not valid UTF-8: {exc.reason} at byte {exc.start}"
                        continue
                keep.append(i)
            arr = pa.array([values[i] for i in keep], pa.binary()).cast(pa.string())
            table = pa.table({"value": arr}).replace_schema_metadata(_META)
            return Decoded((DecodedPart(keep, table, "string"),) if keep else (), errors)
        table = pa.table({"value": arr}).replace_schema_metadata(_META)
        return Decoded((DecodedPart(rows, table, "string"),))
