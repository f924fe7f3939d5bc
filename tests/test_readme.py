"""The README's configuration reference is the generated one, and every config block in it is
valid: each ``properties``, YAML and JSON block parses with s3sink's own config parser, with
only addresses supplied from the environment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from s3sink.config import docs_markdown, parse, parse_properties, read_config_file

README = Path(__file__).resolve().parent.parent / "README.md"
#: The Kafka Connect connector config the README shows (CI clones next to ``shared/``).
EXAMPLE = Path(__file__).resolve().parents[2] / "shared/examples/confluent-s3-sink-orders.json"
if not EXAMPLE.exists():
    EXAMPLE = Path("/work/shared/examples/confluent-s3-sink-orders.json")

#: The only values the environment supplies: addresses (the Connect worker's bootstrap servers).
ADDRESSES = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}


def fenced_blocks(text: str | None = None) -> list[tuple[str, str, str]]:
    """``(heading, language, body)`` of every fenced block, with the nearest heading above it."""
    text = README.read_text() if text is None else text
    out: list[tuple[str, str, str]] = []
    heading = ""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.strip()
        elif line.startswith("```"):
            lang = line[3:].strip()
            body: list[str] = []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((heading, lang, "".join(body)))
        i += 1
    return out


def quick_start_properties() -> str:
    m = re.search(r"cat > sink.properties <<'CONF'\n(.*?)\nCONF", README.read_text(), re.S)
    assert m is not None
    return m.group(1) + "\n"


def test_config_reference_is_generated() -> None:
    text = README.read_text()
    m = re.search(r"<!-- config-reference:start -->\n(.*)<!-- config-reference:end -->", text, re.S)
    assert m is not None, "README lacks the config reference markers"
    assert m.group(1) == docs_markdown(), "README config reference is stale: run `make docs`"


def test_quick_start_properties_are_valid() -> None:
    cfg = parse(parse_properties(quick_start_properties()), environ={})
    assert cfg.format_class == "parquet"
    assert cfg.partitioner_class == "time"
    assert cfg.path_format == "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"


def _is_complete(raw: dict[str, str]) -> bool:
    """A whole connector config (it names its topics) rather than a fragment of one."""
    return "topics" in raw or "topics.regex" in raw


def _config_blocks() -> list[tuple[str, str, str]]:
    found = []
    for heading, lang, body in fenced_blocks():
        if lang == "properties":
            found.append((heading, lang, body))
        elif lang in ("json", "yaml"):
            data = json.loads(body) if lang == "json" else yaml.safe_load(body)
            if isinstance(data, dict) and not {"apiVersion", "services"} & set(data):
                found.append((heading, lang, body))  # not a Kubernetes or compose manifest
    return found


CONFIG_BLOCKS = _config_blocks()


def test_the_readme_has_config_blocks_of_each_kind() -> None:
    kinds = {lang for _h, lang, _b in CONFIG_BLOCKS}
    assert kinds >= {"properties", "json"}
    assert len(CONFIG_BLOCKS) >= 8


@pytest.mark.parametrize(
    ("heading", "lang", "body"),
    CONFIG_BLOCKS,
    ids=[f"{i}-{h.lstrip('# ')[:30]}-{lang}" for i, (h, lang, _b) in enumerate(CONFIG_BLOCKS)],
)
def test_config_block_parses(heading: str, lang: str, body: str, tmp_path: Path) -> None:
    """A properties line with a trailing ``# comment`` keeps the comment in its value, so such a
    block fails here; fragments (a format's or partitioner's keys) complete the quick start's
    config, whole configs parse alone."""
    path = tmp_path / f"block.{lang}"
    path.write_text(body)
    raw = read_config_file(path)
    assert raw, f"{heading}: an empty {lang} block"
    base = {} if _is_complete(raw) else parse_properties(quick_start_properties())
    cfg = parse({**base, **raw}, environ=ADDRESSES)  # raises on any invalid key or value
    for key, value in raw.items():
        assert "#" not in value, f"{heading}: {key}={value!r} holds a trailing comment"
    assert cfg.topics or cfg.topics_regex


def test_connector_json_shown_is_the_example() -> None:
    """The connector config shown under "Migrating" is the example file, character for character."""
    shown = [b for h, lang, b in fenced_blocks() if h.startswith("## Migrating") and lang == "json"]
    assert shown == [EXAMPLE.read_text()]
