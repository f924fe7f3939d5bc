"""``bytearray`` with ``format.bytearray.separator``: the exact bytes of the files the writer
commits, with the separator written as users write it (plain text, escapes in a map, escapes in
a ``.properties`` file)."""

from __future__ import annotations

import gzip

import pytest

from s3sink.config import parse_properties
from s3sink.errors import ConfigError
from s3sink.rotation import RotationReason
from tests.test_writer import TOPIC, Rig

VALUES: list[bytes | None] = [b"alpha", b"", b"line\nbreak", b"\x00\xff|pipe", b"omega"]


def committed(rig: Rig, n_files: int = 1) -> list[tuple[str, bytes]]:
    commits = rig.finish()
    files = [f for m in commits for f in m.files]
    assert len(files) == n_files
    return [(f.key, rig.storage.get(f.key)[0]) for f in files]


@pytest.mark.parametrize(
    ("setting", "sep"),
    [
        ("|", b"|"),
        (r"\r\n", b"\r\n"),  # the escape as text: backslash, r, backslash, n
        (r"\t", b"\t"),
        (r"\x1e", b"\x1e"),  # ASCII record separator
        ("||", b"||"),
        ("\u2192", "\u2192".encode()),  # a non-ASCII character is written as UTF-8
        (r"\\n", b"\\n"),  # an escaped backslash stays a backslash
    ],
)
def test_separator_exact_bytes(setting: str, sep: bytes) -> None:
    rig = Rig(**{"format.class": "bytearray", "format.bytearray.separator": setting})
    assert rig.config.format_bytearray_separator == sep
    rig.writer.append(rig.batch(0, 3, values=VALUES[:3]))
    rig.writer.append(rig.batch(3, 2, values=VALUES[3:]))
    ((key, data),) = committed(rig)
    assert key == f"topics/{TOPIC}/partition=0/{TOPIC}+0+0000000000.bin"
    assert data == b"".join((v or b"") + sep for v in VALUES)


def test_separator_from_a_properties_file() -> None:
    """In a ``.properties`` file ``\\r\\n`` is unescaped by the file syntax (as in Java), and
    ``\\\\r\\\\n`` by the setting: both give CR LF."""
    for line in (r"format.bytearray.separator=\r\n", r"format.bytearray.separator=\\r\\n"):
        props = parse_properties(line + "\nformat.class=bytearray\n")
        rig = Rig(**props)
        assert rig.config.format_bytearray_separator == b"\r\n", line
        rig.writer.append(rig.batch(0, 2, values=[b"a", b"b"]))
        ((_, data),) = committed(rig)
        assert data == b"a\r\nb\r\n"


def test_separator_with_gzip_extension_and_rolls() -> None:
    rig = Rig(
        **{
            "format.class": "bytearray",
            "format.bytearray.separator": r"\r\n",
            "format.bytearray.extension": ".txt",
            "s3.compression.type": "gzip",
            "flush.size": "3",
        }
    )
    rig.writer.append(rig.batch(0, 5, values=VALUES))
    files = committed(rig, n_files=2)
    assert [k for k, _ in files] == [
        f"topics/{TOPIC}/partition=0/{TOPIC}+0+0000000000.txt.gz",
        f"topics/{TOPIC}/partition=0/{TOPIC}+0+0000000003.txt.gz",
    ]
    assert [gzip.decompress(d) for _, d in files] == [
        b"alpha\r\n\r\nline\nbreak\r\n",
        b"\x00\xff|pipe\r\nomega\r\n",
    ]


def test_tombstones_written_as_empty_values_between_separators() -> None:
    rig = Rig(
        **{
            "format.class": "bytearray",
            "format.bytearray.separator": "|",
            "behavior.on.null.values": "write",
        }
    )
    rig.writer.append(rig.batch(0, 3, values=[b"a", None, b"c"]))
    ((_, data),) = committed(rig)
    assert data == b"a||c|"


def test_an_empty_file_is_not_committed() -> None:
    rig = Rig(**{"format.class": "bytearray", "format.bytearray.separator": "|"})
    rig.writer.seal(RotationReason.SHUTDOWN)
    assert rig.finish() == []


def test_unicode_escape_above_latin1() -> None:
    rig = Rig(**{"format.class": "bytearray", "format.bytearray.separator": r"\u2028"})
    assert rig.config.format_bytearray_separator == "\u2028".encode()


def test_a_lone_backslash_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"format.bytearray.separator.*lone backslash.*\\\\"):
        Rig(**{"format.class": "bytearray", "format.bytearray.separator": "|\\"})
