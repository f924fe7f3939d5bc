"""The README's configuration reference is the generated one, and its examples parse."""

from __future__ import annotations

import re
from pathlib import Path

from s3sink.config import docs_markdown, parse, parse_properties

README = Path(__file__).resolve().parent.parent / "README.md"


def test_config_reference_is_generated() -> None:
    text = README.read_text()
    m = re.search(r"<!-- config-reference:start -->\n(.*)<!-- config-reference:end -->", text, re.S)
    assert m is not None, "README lacks the config reference markers"
    assert m.group(1) == docs_markdown(), "README config reference is stale: run `make docs`"


def test_quick_start_properties_are_valid() -> None:
    text = README.read_text()
    m = re.search(r"cat > sink.properties <<'CONF'\n(.*?)\nCONF", text, re.S)
    assert m is not None
    cfg = parse(parse_properties(m.group(1)), environ={})
    assert cfg.format_class == "parquet"
    assert cfg.partitioner_class == "time"
    assert cfg.path_format == "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
