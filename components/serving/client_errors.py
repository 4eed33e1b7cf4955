"""A client's mistake is one log line, not an ERROR with a traceback.

BentoML logs every failed request through one call (`log_exception`: "Exception on <path>
[<method>]" at ERROR, with the traceback), whether the server broke or the client sent an
unknown id or a wrong type. Under a flood of bad requests that buried real faults and cost the
server time (a fuzz run: 3,110 forty-line tracebacks for 3,612 requests). This filter, on that
logger, turns the records of client errors (pydantic validation, BentoML's 4xx exceptions:
unknown ids, missing token) into one INFO line naming the status and the reason; a server
error keeps its ERROR record and traceback.
"""
from __future__ import annotations

import logging

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"   # the logger of BentoML's log_exception
MAX_REASON_CHARS = 300
MAX_FIELDS = 3


def client_status(exc: BaseException) -> int | None:
    """The 4xx status BentoML answers `exc` with, None for a server error."""
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, BentoMLException) and exc.error_code.value < 500:
        return exc.error_code.value
    return None


def reason(exc: BaseException) -> str:
    """What the client got wrong, short: the fields and messages of a validation error, else the message."""
    if isinstance(exc, ValidationError):
        fields = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:MAX_FIELDS]]
        text = f"{exc.error_count()} invalid field(s): " + "; ".join(fields)
    else:
        text = str(exc)
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


class ClientErrorsInOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = client_status(exc) if exc is not None else None
        if status is None:
            return True
        path, method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg, record.args = "client error %d on %s %s: %s", (status, method, path, reason(exc))
        record.exc_info, record.exc_text = None, None
        return True


def log_client_errors_in_one_line() -> None:
    """Install the filter (idempotent): called where the service starts."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorsInOneLine) for f in logger.filters):
        logger.addFilter(ClientErrorsInOneLine())
