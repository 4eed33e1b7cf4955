"""A client's mistake is one INFO line, a server fault keeps its ERROR traceback; the balancer's
configuration names every worker and balances requests by least connections."""
import logging
import shutil
import subprocess
import sys

import pytest
from bentoml.exceptions import BentoMLException, InvalidArgument
from pydantic import BaseModel, ValidationError

from components.deployment.serve import haproxy_config
from components.serving.client_errors import BENTOML_REQUEST_LOGGER, ClientErrorsInOneLine


class Query(BaseModel):
    k: int


def _record(exc: BaseException) -> logging.LogRecord:
    """The record BentoML's log_exception makes inside its `except`."""
    try:
        raise exc
    except BaseException:
        return logging.getLogger(BENTOML_REQUEST_LOGGER).makeRecord(
            BENTOML_REQUEST_LOGGER, logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/recommend", "POST"),
            sys.exc_info())


def _validation_error() -> ValidationError:
    try:
        Query(k="many")
    except ValidationError as exc:
        return exc
    raise AssertionError("no validation error")


@pytest.mark.parametrize("exc,status,words", [
    (_validation_error(), 400, "k: Input should be a valid integer"),
    (InvalidArgument("unknown shopper 'x'"), 400, "unknown shopper 'x'"),
])
def test_a_client_error_becomes_one_info_line(exc, status, words):
    record = _record(exc)
    assert ClientErrorsInOneLine().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line.startswith(f"INFO client error {status} on POST /recommend: ") and words in line
    assert "\n" not in line


@pytest.mark.parametrize("exc", [RuntimeError("boom"), BentoMLException("internal")])
def test_a_server_error_keeps_its_traceback(exc):
    record = _record(exc)
    assert ClientErrorsInOneLine().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" in logging.Formatter().format(record)


@pytest.mark.parametrize("session_ttl", [0, 30])
def test_the_balancer_names_every_worker_balances_by_least_connections_and_haproxy_accepts_it(tmp_path, session_ttl):
    config = haproxy_config(3000, [4001, 4002], session_ttl)
    assert "bind 127.0.0.1:3000" in config and "balance leastconn" in config and "option httpchk GET /readyz" in config
    assert "server w0 127.0.0.1:4001 check" in config and "server w1 127.0.0.1:4002 check" in config
    assert ("stick on req.body,json_query('$.session_id')" in config) == bool(session_ttl)
    (tmp_path / "haproxy.cfg").write_text(config)
    checked = subprocess.run([shutil.which("haproxy") or "haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
