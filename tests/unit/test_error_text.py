"""What operators may read of an error (shared.error_text), and the log filter that
keeps FastStream's failed-batch lines to it."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from pydantic import TypeAdapter, ValidationError

from shared.error_text import describe, without_literals
from shared.logs import SHOWN_ERRORS_ONLY

NAME, NIK, EMAIL = "Budi Santoso", "3575011505900001", "budi.santoso@example.com"


def validation_error() -> ValidationError:
    try:
        TypeAdapter(dict[str, int]).validate_python({"full_name": NAME, "nik": NIK + "x"})
    except ValidationError as error:
        return error
    raise AssertionError("no error")


def test_a_validation_error_is_its_locations_and_messages_never_the_input() -> None:
    error = validation_error()
    assert NAME in str(error), "pydantic's own text quotes the input"
    shown = describe(error)
    assert shown.startswith("ValidationError: full_name: Input should be a valid integer")
    assert NAME not in shown and NIK not in shown


def test_a_postgres_error_keeps_its_state_and_names_but_not_the_value() -> None:
    error = asyncpg.InvalidTextRepresentationError(
        f'invalid input syntax for type integer: "{NAME}"'
    )
    error.sqlstate = "22P02"  # type: ignore[misc]
    shown = describe(error)
    assert "InvalidTextRepresentationError" in shown and "SQLSTATE 22P02" in shown
    assert "invalid input syntax for type integer" in shown
    assert NAME not in shown


@pytest.mark.parametrize(
    "error",
    [
        KeyError(NAME),
        ValueError(f"cannot send to {EMAIL}"),
        RuntimeError(f"unexpected NIK {NIK} for '{NAME}'"),
        asyncpg.exceptions.DataError(
            f"invalid input for query argument $1: '{NAME}' (expected int)"
        ),
    ],
    ids=["key-error", "email", "nik-and-name", "asyncpg-argument"],
)
def test_other_errors_show_their_kind_and_text_without_literals_or_contacts(
    error: BaseException,
) -> None:
    shown = describe(error)
    assert shown.startswith(type(error).__name__)
    for secret in (NAME, NIK, EMAIL):
        assert secret not in shown, shown


def test_an_error_without_text_is_its_kind() -> None:
    assert describe(TimeoutError()) == "TimeoutError"


def test_literals_are_replaced_keeping_their_quotes() -> None:
    assert without_literals("""column "nik" got 'x'""") == """column "…" got '…'"""


def test_faststreams_failed_batch_line_keeps_only_what_may_be_shown() -> None:
    error = validation_error()
    record = logging.LogRecord(
        "perisai.test.broker", logging.ERROR, __file__, 1, f"ValidationError: {error}", (),
        (type(error), error, error.__traceback__),
    )  # fmt: skip
    assert SHOWN_ERRORS_ONLY.filter(record) is True
    assert record.exc_info is None
    assert record.getMessage() == describe(error)
    assert NAME not in record.getMessage()


def test_a_line_without_an_exception_passes_unchanged() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "Received %s", ("batch",), None)
    assert SHOWN_ERRORS_ONLY.filter(record) is True
    assert record.getMessage() == "Received batch"
