"""The compatibility rule of the message contract (shared.contract): within a version,
fields may be added as optional and nothing else."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import Field, create_model

from shared.contract import breaking_changes, check, snapshot
from shared.events import Event

BEFORE: dict[str, Any] = {
    "event_type": (Literal["example.happened"], Field(default="example.happened", description="t")),
    "name": (str, Field(description="A name.")),
    "count": (int, Field(default=0, description="How many.")),
}
"""A v1 event as first released."""


def example(**fields: Any) -> type[Event]:
    """The example event with ``fields`` replaced or added (None: removed)."""
    definition = {k: v for k, v in {**BEFORE, **fields}.items() if v is not None}
    model = create_model("Example", __base__=Event, __doc__="An example.", **definition)
    model.TOPIC = "example.happened.v1"
    return model


def problems(after: type[Event]) -> list[str]:
    return breaking_changes(snapshot(example()), snapshot(after))


def test_the_committed_snapshots_are_current_and_nothing_broke_them() -> None:
    """Run python -m shared.contract after adding an optional field; a breaking change
    needs a new topic version."""
    broken, stale = check()
    assert broken == []
    assert stale == [], f"out of date (run python -m shared.contract): {stale}"


def test_adding_an_optional_field_keeps_the_version() -> None:
    assert problems(example(note=(str | None, Field(default=None, description="n")))) == []


def test_removing_or_renaming_a_field_breaks_it() -> None:
    [problem] = problems(example(count=None))
    assert "'count' was removed" in problem


def test_retyping_a_field_breaks_it() -> None:
    [problem] = problems(example(count=(str, Field(default="0", description="How many."))))
    assert "'count' changed type" in problem


def test_making_a_field_required_breaks_it() -> None:
    [problem] = problems(example(count=(int, Field(description="How many."))))
    assert "'count' became required" in problem


def test_changing_a_default_breaks_it() -> None:
    [problem] = problems(example(count=(int, Field(default=1, description="How many."))))
    assert "'count' changed its default" in problem


def test_a_new_required_field_breaks_it() -> None:
    [problem] = problems(example(region=(str, Field(description="r"))))
    assert "new field 'region' is required" in problem


def test_rewording_a_description_is_not_a_change() -> None:
    reworded = example(count=(int, Field(default=0, description="How many, reworded.")))
    assert problems(reworded) == []


@pytest.mark.parametrize("count", [1, 2])
def test_each_problem_names_the_topic(count: int) -> None:
    after = example(count=None) if count == 1 else example(count=None, name=None)
    found = problems(after)
    assert len(found) == count
    assert all(p.startswith("example.happened.v1: ") for p in found)
