"""Logging set-up, called by entry points only (CLI, DAG tasks, service)."""
import logging
import os

# libraries that log every import-time registration at INFO; their warnings still come through
QUIET_LIBRARIES = ("great_expectations", "alembic.runtime.plugins", "httpx")


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("INTEREST_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
