"""schemathesis against the OpenAPI document: generated calls to every /api/v1 operation, with a
valid agency token, never get a server error and always answer as the document says."""

from __future__ import annotations

import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, given, settings

from provisioning import roles
from provisioning.accounts import get_account
from tests.portal_fixtures import A, PortalWorld

EXAMPLES = 30  # per operation


def test_every_operation_answers_as_documented(pw: PortalWorld) -> None:
    with pw.gm.session() as s, s.begin():
        admin = roles.principal_for_account(s, get_account(s, pw.people["admin_a"].address))
        _, token = roles.create_token(s, admin, A, "fuzz")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", pw.app)
    headers = {"Authorization": f"Bearer {token}"}
    tried, failures, calls = [], [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:  # type: ignore[no-untyped-def]
            calls.append(case.operation.label)
            # Not "positive data acceptance": the engine refuses schema-valid input the document
            # cannot express (an agency code that does not exist, a name with digits), with a 400.
            case.call_and_validate(headers=headers, excluded_checks=[checks.positive_data_acceptance])

        try:
            call()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert len(tried) == 7, tried
    assert len(calls) >= 7 * 10  # hypothesis really generated cases for each
    assert failures == [], "\n\n".join(failures)
