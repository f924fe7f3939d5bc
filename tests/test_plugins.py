"""Third-party partitioners and formats: by dotted path, by entry point, and the errors.

The plugins below are what a user would write: classes that satisfy the Protocols in
``partitioners/base.py`` and ``formats/base.py``. They are loaded by name exactly as the sink
loads them, and records written through the :class:`~s3sink.writer.PartitionWriter` must land
where the custom partitioner says, in the bytes the custom format writes.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

import formats
import partitioners
from formats import load_format
from formats.base import FileStats, Format, OutputStream, RecordWriter
from partitioners import load_partitioner
from partitioners.base import Encoded, PartitionColumn, Partitioner
from s3sink.config import SinkConfig
from s3sink.errors import ConfigError, PluginError
from tests.test_writer import TOPIC, Rig

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.records import RecordBatch


# -- the plugins --------------------------------------------------------------------------------


class KeyInitialPartitioner:
    """``initial=<first letter of the key>``, under ``by-key/<topic>/``."""

    name: ClassVar[str] = "key_initial"

    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    def needs_values(self) -> bool:
        return False

    def encode(self, batch: RecordBatch, values: pa.Table | None, now_ms: int) -> Encoded:
        parts: list[str | None] = []
        errors: dict[int, str] = {}
        for i, k in enumerate(batch.keys):
            if not k:
                parts.append(None)
                errors[i] = "no key"
            else:
                parts.append(f"initial={k[:1].decode()}")
        return Encoded(parts, errors)

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        return None

    def path(self, topic: str, encoded: str) -> str:
        return f"by-key/{topic}/{encoded}"

    def partition_columns(self) -> Sequence[PartitionColumn]:
        return (PartitionColumn("initial", "string"),)


class ReversedLinesFormat:
    """Each value reversed, one per line, in ``.rev`` files."""

    name: ClassVar[str] = "reversed_lines"

    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    def extension(self) -> str:
        return ".rev"

    def needs_values(self) -> bool:
        return False

    def open(self, out: OutputStream) -> RecordWriter:
        return _ReversedWriter(out)


class _ReversedWriter:
    def __init__(self, out: OutputStream) -> None:
        self._out = out
        self._records = 0
        self._bytes = 0

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        body = b"".join((v or b"")[::-1] + b"\n" for v in batch.values)
        self._out.write(body)
        self._records += len(batch)
        self._bytes += len(body)

    def bytes_written(self) -> int:
        return self._bytes

    def buffered_bytes(self) -> int:
        return 0

    def close(self) -> FileStats:
        return FileStats(self._records, self._bytes)


class NotAFormat:
    """A class named as a format that has none of the format methods."""

    def __init__(self, config: SinkConfig) -> None:
        pass


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **kw)


HERE = __name__  # "tests.test_plugins" when collected by pytest


# -- dotted paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [".", ":"])
def test_dotted_paths_load_the_classes(sep: str) -> None:
    p = load_partitioner(cfg(partitioner_class=f"{HERE}{sep}KeyInitialPartitioner"))
    f = load_format(cfg(format_class=f"{HERE}{sep}ReversedLinesFormat"))
    assert type(p).__name__ == "KeyInitialPartitioner" and isinstance(p, Partitioner)
    assert type(f).__name__ == "ReversedLinesFormat" and isinstance(f, Format)


def test_records_land_where_the_custom_partitioner_says() -> None:
    rig = Rig(
        **{
            "partitioner.class": f"{HERE}.KeyInitialPartitioner",
            "format.class": f"{HERE}.ReversedLinesFormat",
            "errors.tolerance": "all",
        }
    )
    b = rig.batch(0, 6, values=[b"abc", b"def", b"ghi", b"jkl", b"mno", b"pqr"])
    b.keys = [b"apple", b"banana", b"avocado", None, b"blueberry", b"cherry"]
    rig.writer.append(b)
    (m,) = rig.finish()
    assert (m.start, m.end) == (0, 6)
    got = {f.key: rig.storage.get(f.key)[0] for f in m.files if f.role == "data"}
    assert got == {
        f"topics/by-key/{TOPIC}/initial=a/{TOPIC}+0+0000000000.rev": b"cba\nihg\n",
        f"topics/by-key/{TOPIC}/initial=b/{TOPIC}+0+0000000001.rev": b"fed\nonm\n",
        f"topics/by-key/{TOPIC}/initial=c/{TOPIC}+0+0000000005.rev": b"rqp\n",
    }
    # the record the partitioner refused (no key) is a bad record of the same commit
    (err,) = [f for f in m.files if f.role == "errors"]
    assert (err.first_offset, err.records) == (3, 1)
    assert b"no key" in rig.storage.get(err.key)[0]
    assert rig.metrics.total("bad_records_total") == 1


# -- entry points -------------------------------------------------------------------------------


def _install_dist(
    root: Path,
    dist: str,
    module: str,
    groups: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real installed distribution (a ``.dist-info`` with ``entry_points.txt``) on sys.path,
    with a plugin module that re-exports the classes of this test module."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(
        f"from {HERE} import KeyInitialPartitioner, ReversedLinesFormat, NotAFormat\n"
        "__all__ = ['KeyInitialPartitioner', 'ReversedLinesFormat', 'NotAFormat']\n"
    )
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in groups.items()
    )
    (info / "entry_points.txt").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_entry_points_register_short_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_dist(
        tmp_path,
        "acme_sink_plugins",
        "acme_ep_ok",
        {
            "s3sink.partitioners": {"by_key": "acme_ep_ok:KeyInitialPartitioner"},
            "s3sink.formats": {"reversed": "acme_ep_ok:ReversedLinesFormat"},
        },
        monkeypatch,
    )
    p = load_partitioner(cfg(partitioner_class="by_key"))
    f = load_format(cfg(format_class="reversed"))
    assert type(p).__name__ == "KeyInitialPartitioner"
    assert type(f).__name__ == "ReversedLinesFormat"
    # and the writer uses them
    rig = Rig(**{"partitioner.class": "by_key", "format.class": "reversed"})
    b = rig.batch(10, 2, values=[b"12", b"34"])
    b.keys = [b"x1", b"y2"]
    rig.writer.append(b)
    (m,) = rig.finish()
    assert sorted((f.key, rig.storage.get(f.key)[0]) for f in m.files) == [
        (f"topics/by-key/{TOPIC}/initial=x/{TOPIC}+0+0000000010.rev", b"21\n"),
        (f"topics/by-key/{TOPIC}/initial=y/{TOPIC}+0+0000000011.rev", b"43\n"),
    ]
    # built-ins are still there, and the unknown-name message lists the plugin too
    assert load_format(cfg(format_class="json")).name == "json"
    with pytest.raises(PluginError, match=r"use one of .*\breversed\b"):
        load_format(cfg(format_class="nosuch"))


@pytest.mark.parametrize(
    ("group", "taken", "loader"),
    [
        ("s3sink.formats", "json", load_format),
        ("s3sink.partitioners", "default", load_partitioner),
    ],
)
def test_a_builtin_name_registered_again_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    group: str,
    taken: str,
    loader: Callable[[SinkConfig], object],
) -> None:
    target = "ReversedLinesFormat" if group == "s3sink.formats" else "KeyInitialPartitioner"
    _install_dist(
        tmp_path, "acme_dup", "acme_ep_dup", {group: {taken: f"acme_ep_dup:{target}"}}, monkeypatch
    )
    with pytest.raises(PluginError) as info:
        loader(cfg())
    msg = str(info.value)
    assert f"{group}: plugin name {taken!r} is registered twice" in msg
    assert f"acme_ep_dup:{target}" in msg and "uninstall one of them" in msg


def test_two_distributions_registering_one_name_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in (1, 2):
        _install_dist(
            tmp_path / f"d{i}",
            f"acme_twice_{i}",
            f"acme_ep_twice{i}",
            {"s3sink.formats": {"reversed": f"acme_ep_twice{i}:ReversedLinesFormat"}},
            monkeypatch,
        )
    with pytest.raises(PluginError, match=r"'reversed' is registered twice \(acme_ep_twice\d"):
        load_format(cfg(format_class="json"))


# -- errors -------------------------------------------------------------------------------------


def test_unknown_short_name_lists_the_choices() -> None:
    with pytest.raises(PluginError) as info:
        load_partitioner(cfg(partitioner_class="hourlyy"))
    msg = str(info.value)
    assert msg.startswith("partitioner.class: unknown partitioner 'hourlyy'; use one of ")
    for name in partitioners.BUILTIN:
        assert name in msg
    assert "Confluent class name" in msg and "dotted module.Class path" in msg
    assert info.value.key == "partitioner.class"
    assert isinstance(info.value, ConfigError)  # stops the sink at start-up
    with pytest.raises(PluginError, match=r"format\.class: unknown format 'jsn'; use one of "):
        load_format(cfg(format_class="jsn"))


def test_unknown_dotted_paths_name_the_target() -> None:
    with pytest.raises(PluginError, match=r"cannot load tests\.no_such_module\.X: No module"):
        load_format(cfg(format_class="tests.no_such_module.X"))
    with pytest.raises(PluginError, match=rf"cannot load {HERE}\.Missing: .*has no attribute"):
        load_partitioner(cfg(partitioner_class=f"{HERE}.Missing"))
    # a Confluent class name the sink does not implement is not silently taken for a path
    with pytest.raises(PluginError, match=r"io\.confluent\.connect\.s3\.format\.Nope"):
        load_format(cfg(format_class="io.confluent.connect.s3.format.Nope"))


def test_a_class_that_is_not_a_plugin_is_refused_at_load() -> None:
    with pytest.raises(PluginError, match=rf"format\.class: {HERE}\.NotAFormat is not a format"):
        load_format(cfg(format_class=f"{HERE}.NotAFormat"))
    with pytest.raises(PluginError, match=r"partitioner\.class: .* is not a partitioner"):
        load_partitioner(cfg(partitioner_class=f"{HERE}.ReversedLinesFormat"))
    with pytest.raises(PluginError, match=r"format\.class: os\.path is not a format"):
        load_format(cfg(format_class="os.path"))


# -- Confluent class names ----------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "name"), sorted(partitioners.ALIASES.items()))
def test_every_confluent_partitioner_name_resolves(alias: str, name: str) -> None:
    from tests.test_partitioners_contract import SETTINGS

    p = load_partitioner(cfg(**{"partitioner_class": alias, **SETTINGS[name]}))
    assert p.name == name
    assert type(p) is type(load_partitioner(cfg(**{"partitioner_class": name, **SETTINGS[name]})))


@pytest.mark.parametrize(("alias", "name"), sorted(formats.ALIASES.items()))
def test_every_confluent_format_name_resolves(alias: str, name: str) -> None:
    f = load_format(cfg(format_class=alias))
    assert f.name == name
    assert type(f) is type(load_format(cfg(format_class=name)))


def test_confluent_names_cover_the_connector() -> None:
    assert set(partitioners.ALIASES) == {
        f"io.confluent.connect.storage.partitioner.{c}"
        for c in (
            "DefaultPartitioner",
            "FieldPartitioner",
            "TimeBasedPartitioner",
            "HourlyPartitioner",
            "DailyPartitioner",
        )
    }
    assert set(formats.ALIASES) == {
        "io.confluent.connect.s3.format.json.JsonFormat",
        "io.confluent.connect.s3.format.bytearray.ByteArrayFormat",
        "io.confluent.connect.s3.format.parquet.ParquetFormat",
        "io.confluent.connect.s3.format.avro.AvroFormat",
    }
