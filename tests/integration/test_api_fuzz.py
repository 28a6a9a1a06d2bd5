"""schemathesis against the API's own OpenAPI document (served at /openapi.json), in-process over WSGI
with the embedded emulator behind it: no generated request, valid or not, gets a server error, and every
answer is one the document declares (status code, content type, body schema). Every request carries a
valid API key (the document's bearer scheme), whatever schemathesis generated, so that the fuzzing reaches
past authentication; what requests without one get is tested in test_api_keys.py.

Each operation gets the fuzz profile's example count in each generation mode (tests/fuzzing.py:
`ORDERS_FUZZ=full` for 10,000). schemathesis's own pytest integration does not run on pytest 9 (it
reads a private attribute pytest removed), so the operations are driven with hypothesis directly.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orders.harness.order_mix import OrderMix
from orders.harness.runner import seed_catalogue
from tests.fuzzing import EXAMPLES

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_no_request_gets_a_server_error(infra: Any, mode: GenerationMode) -> None:
    from orders.api.app import create_app
    from orders.aws.api_keys import ApiKeys

    seed_catalogue(infra, OrderMix().stock(10))
    key, _ = ApiKeys(infra).create("fuzzer")
    schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(infra))
    # Not schemathesis's own negative cases for the bearer scheme (a missing Authorization), which
    # would drop the key: the fuzzing is of what lies behind authentication.
    schema.config.generation.update(with_security_parameters=False)
    statuses: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        fuzz(result.ok(), mode, statuses, {"Authorization": f"Bearer {key}"})
    print(f"\n{mode}: {sorted(statuses.items())}")
    assert not any(status >= 500 for _, status in statuses)
    assert not any(status == 401 for _, status in statuses)  # the key went with every request
    assert sum(n for (label, _), n in statuses.items() if label == "POST /orders") >= min(EXAMPLES, 50)


def fuzz(operation: Any, mode: GenerationMode, statuses: Counter[tuple[str, int]],
         headers: dict[str, str]) -> None:
    """Call one operation with generated requests (and `headers`), validating each answer; count statuses."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses[(operation.label, response.status_code)] += 1

    try:
        call()
    except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters, or text)
        assert mode is GenerationMode.NEGATIVE, operation.label
