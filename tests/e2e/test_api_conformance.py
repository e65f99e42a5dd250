"""A bounded fuzzing lane: schemathesis generates requests from each running service's
own OpenAPI document (valid ones and invalid ones) and checks every answer: never a 5xx,
every status, content type, header and body as the document declares. So the document
stays honest, and a client generated from it keeps working, as the APIs grow.

The seed is fixed, so a failure reproduces; change SEED to explore further."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.stack import LocalStack

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = 20250522
MAX_EXAMPLES = 60
"""Per operation; about 1,300 requests for registration, a few seconds each service."""
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)


@pytest.mark.parametrize("service", ["registration", "coverage", "notifications"])
async def test_every_answer_conforms_to_the_openapi_document(
    local_stack: LocalStack, service: str, tmp_path: Path
) -> None:
    base_url = getattr(local_stack.config, f"{service}_url")
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {local_stack.keys[service]}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--no-color",
        "--report-dir",
        str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"schemathesis found problems in {service}:\n{text[-8000:]}"
    assert "passed" in text and "generated" in text
