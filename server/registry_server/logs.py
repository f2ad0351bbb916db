"""The server's log lines: text, or one JSON object a line (`--log-format json`).

One formatter writes both forms of every record. An access line (`api/interceptors.py`)
carries its fields in `record.call` (method, code, duration_ms, principal, peer,
request_id and, for a kept reply or a stream, detail); in JSON they are the object's
keys, beside time, level, logger, process and message. The API key is never among them.

`configure` also puts the form in `REGISTRY_LOG_FORMAT`, so the processes a server
starts (its migration runner, SQLite's write child) write theirs alike.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMAT_ENV = "REGISTRY_LOG_FORMAT"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogFormatter(logging.Formatter):
    def __init__(self, form: LogFormat = LogFormat.text, text_format: str = TEXT_FORMAT) -> None:
        super().__init__(text_format)
        self.form = form

    def format(self, record: logging.LogRecord) -> str:
        if self.form is LogFormat.text:
            return super().format(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "call", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def inherited_format() -> LogFormat:
    """The form `REGISTRY_LOG_FORMAT` asks for (a parent server's), else text."""
    value = os.environ.get(FORMAT_ENV, "")
    return LogFormat(value) if value in LogFormat.__members__ else LogFormat.text


def configure(level: str, form: LogFormat | None = None, text_format: str = TEXT_FORMAT) -> None:
    """The root logger at `level`, writing to standard error in `form` (default: the
    inherited one)."""
    form = LogFormat(form) if form is not None else inherited_format()
    os.environ[FORMAT_ENV] = form.value
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(form, text_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
