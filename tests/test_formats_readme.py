"""The README's format and partitioner examples: valid configurations that load; each
partitioner's example config run (a catch-up on the rig's broker) with the DuckDB query shown
beside it executed over the output; the parquet, json and avro examples run with their DuckDB
query or Python reader; the ``bytearray`` read example reads what it wrote."""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from formats import load_format
from partitioners import load_partitioner
from partitioners.base import Partitioner
from s3sink.config import parse, parse_properties
from s3sink.plugins import _import
from s3sink.sink import Sink
from tests.rig.kafka import Deliveries, create_topic, produce_n, unique_name
from tests.test_readme import fenced_blocks, quick_start_properties
from tests.test_readme_commands import Swap

README = Path(__file__).resolve().parent.parent / "README.md"
BASE = {"bootstrap.servers": "127.0.0.1:9", "topics": "orders", "storage.url": "file:///tmp/x"}


def section() -> str:
    text = README.read_text()
    start = text.index("## Formats and partitioners")
    return text[start : text.index("\n## ", start + 3)]


BLOCKS = re.findall(r"```properties\n(.*?)```", section(), re.S)
SECTION_BLOCKS = fenced_blocks(section())
CUSTOM = "#### A custom partitioner"


def plugin_source() -> str:
    (code,) = [b for h, lang, b in SECTION_BLOCKS if h == CUSTOM and lang == "python"]
    return code


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The README's custom partitioner as the module it names, on ``sys.path``."""
    (tmp_path / "mypartitioners.py").write_text(plugin_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("mypartitioners", None)


def test_the_section_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.usefixtures("plugin_on_path")
@pytest.mark.parametrize("block", BLOCKS)
def test_examples_load(block: str) -> None:
    cfg = parse({**BASE, **parse_properties(block)}, environ={})
    load_format(cfg)
    load_partitioner(cfg)


# -- partitioner examples, run -----------------------------------------------------------------


def partitioner_examples() -> list[tuple[str, str, str]]:
    """``(heading, properties, sql)``: each example config of the partitioner subsections with
    the query that follows it."""
    out = []
    pending: tuple[str, str] | None = None
    for heading, lang, body in SECTION_BLOCKS:
        if not heading.startswith("#### "):
            continue
        if lang == "properties":
            pending = (heading, body)
        elif lang == "sql" and pending is not None and pending[0] == heading:
            out.append((heading, pending[1], body))
            pending = None
    return out


EXAMPLES = partitioner_examples()

N = 48
T0 = 1_767_297_600_000  # 2026-01-01T20:00:00Z; a record every 25 minutes spans two days
COUNTRIES = ("FR", "DE", "US")
CITIES = {"FR": ("Paris", "Lyon"), "DE": ("Berlin",), "US": ("New York",)}


def order(i: int) -> dict[str, Any]:
    country = COUNTRIES[i % 3]
    cities = CITIES[country]
    return {
        "id": i,
        "country": country,
        "address": {"city": cities[i % len(cities)]},
        "created_at": T0 + i * 25 * 60_000,
        "amount": i / 2,
    }


def region(i: int) -> str:
    return "eu" if i % 3 < 2 else "us"


@pytest.fixture(scope="module")
def orders_topic(kafka_bootstrap: str) -> tuple[str, Deliveries]:
    topic = create_topic(kafka_bootstrap, 2, prefix="orders")
    deliveries = produce_n(
        kafka_bootstrap,
        topic,
        N,
        value=lambda i: json.dumps(order(i)).encode(),
        key=lambda i: f"{region(i)}:{i}".encode(),
        timestamp_ms=lambda i: order(i)["created_at"],
        partition=lambda i: i % 2,
    )
    return topic, deliveries


def _local(i: int, tz: str) -> datetime:
    return datetime.fromtimestamp(order(i)["created_at"] / 1000, ZoneInfo(tz))


def _rows(key: Callable[[int], tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    counts = Counter(key(i) for i in range(N))
    return sorted((*k, n) for k, n in counts.items())


def expected(heading: str, partitioner: str, deliveries: Deliveries) -> list[tuple[Any, ...]]:
    """The rows each README query returns for the produced orders, computed from them."""
    utc = "UTC"
    by_class: dict[str, Callable[[], list[tuple[Any, ...]]]] = {
        "default": lambda: sorted((p, len(o)) for p, o in deliveries.by_partition().items()),
        "field": lambda: _rows(lambda i: (order(i)["country"], order(i)["address"]["city"])),
        "time": lambda: _rows(
            lambda i: (_local(i, utc).year, _local(i, utc).month, _local(i, utc).day)
        ),
        "hourly": lambda: _rows(lambda i: (_local(i, utc).day, _local(i, utc).hour)),
        "daily": lambda: _rows(lambda i: (2026, 1, _local(i, utc).day)),
        "field_time": lambda: _rows(lambda i: (order(i)["country"], _local(i, "Europe/Paris").day)),
        "mypartitioners.RegionPartitioner": lambda: _rows(lambda i: (region(i),)),
    }
    assert partitioner in by_class, f"{heading}: no expected rows for {partitioner}"
    return by_class[partitioner]()


@pytest.mark.usefixtures("plugin_on_path")
@pytest.mark.parametrize(
    ("heading", "properties", "sql"),
    EXAMPLES,
    ids=[parse_properties(p)["partitioner.class"] for _h, p, _s in EXAMPLES],
)
def test_partitioner_example_runs_and_its_query_reads_it(
    heading: str,
    properties: str,
    sql: str,
    kafka_bootstrap: str,
    orders_topic: tuple[str, Deliveries],
    tmp_path: Path,
) -> None:
    topic, deliveries = orders_topic
    lake = tmp_path / "lake"
    example = parse_properties(properties)
    raw = {
        "name": unique_name("readme-partitioner"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "storage.url": lake.as_uri(),
        "format.class": "parquet",
        "value.converter": "json",
        "http.listen": "none",
        **example,
    }
    summary = Sink(parse(raw, environ={})).run(catchup=True)
    assert summary.records == N and summary.bad_records == 0
    query = Swap({"s3://my-datalake": lake.as_posix(), "/orders/": f"/{topic}/"})(sql)
    rows = duckdb.connect().execute(query).fetchall()
    assert rows == expected(heading, example["partitioner.class"], deliveries), query


def test_every_partitioner_subsection_has_a_run_example() -> None:
    run = {parse_properties(p)["partitioner.class"] for _h, p, _s in EXAMPLES}
    assert run >= {"default", "field", "time", "hourly", "daily", "field_time"}
    assert any("." in name for name in run), "the custom partitioner example"
    headings = {h for h, _lang, _b in SECTION_BLOCKS if h.startswith("#### ")}
    assert headings - {h for h, _p, _s in EXAMPLES} == {"#### Athena"}


@pytest.mark.usefixtures("plugin_on_path")
def test_custom_partitioner_entry_point_names_the_class() -> None:
    """The ``pyproject.toml`` snippet registers the README's class in s3sink's entry-point group
    under the short name it gives, and the class has the Partitioner protocol."""
    (snippet,) = [b for h, lang, b in SECTION_BLOCKS if h == CUSTOM and lang == "toml"]
    groups = tomllib.loads(snippet)["project"]["entry-points"]
    assert list(groups) == ["s3sink.partitioners"]
    ((short, target),) = groups["s3sink.partitioners"].items()
    assert f"partitioner.class={short}" in snippet
    cls = _import(target)
    cfg = parse({**BASE, "partitioner.class": target.replace(":", ".")}, environ={})
    partitioner = load_partitioner(cfg)
    assert type(partitioner) is cls and cls.name == short
    assert isinstance(partitioner, Partitioner)


def _only(heading: str, lang: str) -> str:
    (body,) = [b for h, la, b in SECTION_BLOCKS if h == heading and la == lang]
    return body


@pytest.mark.parametrize("fmt", ["parquet", "json", "avro"])
def test_format_example_runs_and_its_reader_reads_it(
    fmt: str,
    kafka_bootstrap: str,
    orders_topic: tuple[str, Deliveries],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The format's example config on top of the quick start's (hourly time layout), then the
    DuckDB query or the Python reader shown under it, over the output."""
    topic, _deliveries = orders_topic
    heading = f"### `{fmt}`"
    lake = tmp_path / "lake"
    raw = {
        **parse_properties(quick_start_properties()),
        "name": unique_name(f"readme-{fmt}"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "storage.url": lake.as_uri(),
        "http.listen": "none",
        **parse_properties(_only(heading, "properties")),
    }
    assert Sink(parse(raw, environ={})).run(catchup=True).records == N
    swap = Swap({"s3://my-datalake": lake.as_posix(), "/orders/": f"/{topic}/"})
    if fmt == "parquet":
        rows = duckdb.connect().execute(swap(_only(heading, "sql"))).fetchall()
        assert sorted(rows) == _rows(lambda i: (order(i)["country"],))
    elif fmt == "json":
        result = duckdb.connect().execute(swap(_only(heading, "sql")))
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
        assert sorted(r[columns.index("id")] for r in rows) == list(range(N))
        assert {"year", "month", "day", "hour"} <= set(columns)
    else:
        (first,) = lake.rglob(f"{topic}+0+0000000000.avro")
        code = Swap({"orders+0+0000000000.avro": first.as_posix()})(_only(heading, "python"))
        exec(compile(code, "README.md", "exec"), {})
        printed = [ast.literal_eval(line) for line in capsys.readouterr().out.splitlines()]
        hour = order(0)["created_at"] // 3_600_000  # the file of partition 0's first hour
        want = [i for i in range(0, N, 2) if order(i)["created_at"] // 3_600_000 == hour]
        assert [r["id"] for r in printed] == want
        assert printed[0]["address"] == order(0)["address"]


def test_bytearray_read_example(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The ``bytearray`` example config archives raw values; the README's read snippet gets
    them back from a file."""
    (props,) = [
        b for h, lang, b in SECTION_BLOCKS if h == "### `bytearray`" and lang == "properties"
    ]
    (snippet,) = [b for h, lang, b in SECTION_BLOCKS if h == "### `bytearray`" and lang == "python"]
    topic = create_topic(kafka_bootstrap, 1, prefix="orders")
    values = [json.dumps(order(i)).encode() for i in range(20)]
    produce_n(kafka_bootstrap, topic, len(values), value=lambda i: values[i])
    lake = tmp_path / "lake"
    raw = {
        "name": unique_name("readme-bytearray"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "storage.url": lake.as_uri(),
        "http.listen": "none",
        **parse_properties(props),
    }
    assert Sink(parse(raw, environ={})).run(catchup=True).records == len(values)
    (file,) = (lake / "topics" / topic / "partition=0").iterdir()
    assert file.name == f"{topic}+0+0000000000.bin"
    code = Swap({"orders+0+0000000000.bin": file.as_posix()})(snippet)
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["values"] == values
