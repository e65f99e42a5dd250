"""Structured JSON logs, one object per line on stdout, tagged with the service name."""

from __future__ import annotations

import logging
import sys

import structlog

from shared.error_text import describe


def configure_logging(service: str, level: str = "INFO") -> None:
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through the standard library: route them to the same JSON lines.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared_processors, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ShownErrorsOnly(logging.Filter):
    """For a library's logger that logs exceptions with their text and traceback
    (FastStream logs a failed batch so): the line keeps the error's kind and what may
    be shown of it (shared.error_text), not the traceback, whose text can quote the
    records' data. Our consumer logs the failure itself, with the batch it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = describe(record.exc_info[1])
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


SHOWN_ERRORS_ONLY = ShownErrorsOnly()
