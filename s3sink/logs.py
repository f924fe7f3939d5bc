"""Logging: one JSON object per line (default off a terminal) or plain text on a terminal.

Every line about one partition carries ``topic`` and ``partition`` as JSON fields. Code logs a
partition the readable way, ``log.info("%s: rolled ...", writer.tp)``, where ``tp`` is a
:class:`PartitionName` (a ``str`` that knows its topic and partition); the formatter finds it
among the arguments. ``extra={"topic": ..., "partition": ...}`` works too, and so does an
exception that has ``topic`` and ``partition`` attributes (a fenced or bad-record error).

Secrets never reach the output: :func:`setup_logging` takes the secret values of the config
and every formatted line (messages, tracebacks, librdkafka's own log lines) is scrubbed of them,
as are uncaught exceptions of the main thread and of other threads.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3sink.config import SinkConfig

REDACTED = "[redacted]"
#: Secret values shorter than this are not scrubbed from text (they would match everywhere).
MIN_SCRUB_LENGTH = 4
#: Keys ``is_secret`` flags (for ``config check``) whose values are not worth scrubbing from text.
_NOT_SCRUBBED = re.compile(
    r"(mechanisms?|username|location|protocol|service\.name|method|url|principal)$", re.I
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class PartitionName(str):
    """``"<topic>-<partition>"`` that also knows its parts, for log fields and metric labels."""

    # (not ``partition``: that would hide str.partition)
    topic: str
    partition_id: int

    def __new__(cls, topic: str, partition: int) -> PartitionName:
        self = super().__new__(cls, f"{topic}-{partition}")
        self.topic = topic
        self.partition_id = partition
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (PartitionName, (self.topic, self.partition_id))


def partition_fields(record: logging.LogRecord) -> tuple[str, int] | None:
    """The topic and partition a log record is about, if any."""
    topic = getattr(record, "topic", None)
    partition = getattr(record, "partition", None)
    if isinstance(topic, str) and isinstance(partition, int):
        return topic, partition
    args = record.args
    if isinstance(args, tuple):
        for a in args:
            if isinstance(a, PartitionName):
                return a.topic, a.partition_id
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        topic, partition = getattr(exc, "topic", None), getattr(exc, "partition", None)
        if isinstance(topic, str) and isinstance(partition, int):
            return topic, partition
    return None


class Scrubber:
    """Replaces secret values (raw and JSON-escaped) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        forms = set(self.secrets)
        for s in secrets:
            if len(s) < MIN_SCRUB_LENGTH:
                continue
            forms.add(s)
            forms.add(json.dumps(s)[1:-1])
            forms.add(json.dumps(s, ensure_ascii=False)[1:-1])
        # longest first, so a secret containing another is replaced whole
        self.secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text


#: The process-wide scrubber that :func:`setup_logging` installs (also for CLI error messages).
scrub = Scrubber()


def secret_values(cfg: SinkConfig) -> list[str]:
    """Values of the secret keys of ``cfg`` (passwords, secret keys, JAAS configs, tokens)."""
    import dataclasses

    from s3sink.config import is_secret

    out: list[str] = []
    for f in dataclasses.fields(cfg):
        if f.metadata.get("secret"):
            v = getattr(cfg, f.name)
            if isinstance(v, str) and v:
                out.append(v)
    for attr in ("consumer", "producer", "value_converter_props", "key_converter_props", "plugin"):
        props = getattr(cfg, attr, None) or {}
        for k, v in props.items():
            if is_secret(k) and not _NOT_SCRUBBED.search(k) and isinstance(v, str) and v:
                out.append(v)
                if k.endswith("basic.auth.user.info") and ":" in v:
                    out.append(v.split(":", 1)[1])
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        where = partition_fields(record)
        if where is not None:
            out["topic"], out["partition"] = where
        for k, v in record.__dict__.items():
            if k not in _RESERVED and k not in out and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool) or v is None else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def use_json(fmt: str, stream: Any = None) -> bool:
    """``json``/``text`` as asked; ``auto``: text on a terminal, JSON otherwise."""
    if fmt == "json":
        return True
    if fmt == "text":
        return False
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return not (callable(isatty) and isatty())


def setup_logging(fmt: str = "auto", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    scrub.add(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json(fmt, sys.stderr) else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    _install_excepthooks()


def _install_excepthooks() -> None:
    """Uncaught exceptions go through the logger (one scrubbed line), not a raw traceback."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        logging.getLogger("s3sink").critical("uncaught exception", exc_info=(kind, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        logging.getLogger("s3sink").error(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = hook
    threading.excepthook = thread_hook


def format_exception(exc: BaseException) -> str:
    """A one-line, scrubbed description of an error (for the CLI's last words)."""
    text = str(exc) or "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return scrub(text)
