"""The server's log lines: text, or one JSON object a line (`--log-format json`).

One formatter writes both forms of every record. An access line (`api/interceptors.py`)
carries its fields in `record.call` (method, code, duration_ms, principal, peer,
request_id and, for a kept reply or a stream, detail); in JSON they are the object's
keys, beside time, level, logger and message. The API key is never among them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogFormatter(logging.Formatter):
    def __init__(self, form: LogFormat = LogFormat.text) -> None:
        super().__init__(TEXT_FORMAT)
        self.form = form

    def format(self, record: logging.LogRecord) -> str:
        if self.form is LogFormat.text:
            return super().format(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "call", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, form: LogFormat = LogFormat.text) -> None:
    """The root logger at `level`, writing to standard error in `form`."""
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(LogFormat(form)))
    logging.basicConfig(level=level.upper(), handlers=[handler])
