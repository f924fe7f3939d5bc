"""The README's format and partitioner examples are valid configurations that load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from formats import load_format
from partitioners import load_partitioner
from s3sink.config import parse, parse_properties

README = Path(__file__).resolve().parent.parent / "README.md"
BASE = {"bootstrap.servers": "127.0.0.1:9", "topics": "orders", "storage.url": "file:///tmp/x"}


def section() -> str:
    text = README.read_text()
    start = text.index("## Formats and partitioners")
    return text[start : text.index("\n## ", start + 3)]


BLOCKS = re.findall(r"```properties\n(.*?)```", section(), re.S)


def test_the_section_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS)
def test_examples_load(block: str) -> None:
    cfg = parse({**BASE, **parse_properties(block)}, environ={})
    load_format(cfg)
    load_partitioner(cfg)
