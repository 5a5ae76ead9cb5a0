"""The whole OpenAPI document, fuzzed (Schemathesis) against a live server on both databases, as
three callers: anonymous, a consumer and a merchant owner. Every answer must be a non-5xx, and
every answer the document describes must match its schema.

Bounded: a few examples per operation and caller (``MAX_EXAMPLES``), derandomized so a failure
repeats; about a minute per database. Operations that end the caller's own session (退出, sign
out everywhere, password change) are left to anonymous callers, so the other callers keep their
tokens for the rest of the run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.live_support import LiveServer, serve

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("schemathesis")]

SECRET = "fuzz-test-secret-" + "f" * 40
MAX_EXAMPLES = 3
ROLES = ("anonymous", "consumer", "owner")
# Calls that would end the caller's own session (the run goes on with the same token).
ENDS_OWN_SESSION = {
    ("POST", "/api/v1/auth/logout"),
    ("DELETE", "/api/v1/me/sessions"),
    ("PUT", "/api/v1/me/password"),
}
ENV = {
    "O2O_TRUSTED_PROXIES": "",
    # The fuzzer signs in with random phones from one address: do not let the address limit
    # turn every later sign-in into a 429 (that would still pass, but test less).
    "O2O_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    yield from serve(
        request.param, tmp_path_factory.mktemp(f"fuzz-{request.param}"), secret=SECRET, env=ENV
    )


def test_the_whole_api_holds_under_fuzzing(live: LiveServer) -> None:
    document = httpx.get(f"{live.base}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    calls = 0

    def fuzz(operation: Any, headers: dict[str, str], role: str) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            try:
                response = case.call_and_validate(
                    base_url=live.base,
                    headers=headers,
                    checks=[not_a_server_error, response_schema_conformance],
                    timeout=30,
                )
                statuses[response.status_code] += 1
            except Exception as exc:  # collect every operation's failures, report at once
                failures.append(f"{role} {case.method} {case.formatted_path}: {exc}"[:2000])

        run()

    for operation in operations:
        for role in ROLES:
            key = (operation.method.upper(), operation.path)
            if role != "anonymous" and key in ENDS_OWN_SESSION:
                continue
            headers = {} if role == "anonymous" else live.headers(role)

            fuzz(operation, headers, role)
    took = time.perf_counter() - started
    print(
        f"\n[{live.backend}] schemathesis: {len(operations)} operations × {len(ROLES)} callers,"
        f" {calls} calls in {took:.0f}s; statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n\n".join(failures[:20])
    assert not any(s >= 500 for s in statuses), statuses
    assert "Traceback" not in live.server_log()
