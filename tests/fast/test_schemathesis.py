"""The OpenAPI document against the app: generated requests to every operation, no 5xx, no schema violation."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fast.helpers import new_campaign

# What the document promises: never a 5xx, only declared status codes, content types, headers and bodies.
# (A schema-valid request may still be refused for what the document cannot know, such as a buzón that is
# not registered, so acceptance of valid data is not among the checks.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_every_operation_answers_within_its_contract(app, fast_keys):
    new_campaign(app.extensions["campaigns"], "existente", 3)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def answers_within_contract(case):
            case.call_and_validate(headers={"X-API-Key": fast_keys["admin"]}, checks=CHECKS)

        answers_within_contract()
