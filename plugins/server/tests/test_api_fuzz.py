"""Schemathesis fuzzing of the whole API from its own OpenAPI document: no 5xx, ever.

The app is the assembled server (every installed plugin), served by uvicorn on loopback: in the
``local`` auth mode every operation is reachable; in the login modes (when installed) the
unauthenticated surface (login, registration, set-up, and every 401) is fuzzed too. Each operation gets a few generated requests; the
run is bounded so it stays well under a minute. Operations whose inputs carry URLs or host names
are not fuzzed: a generated address could make the server connect to a host that is not ours.
"""

from __future__ import annotations

import collections
import re
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from comfytavern.app import create_app

EXAMPLES_PER_OPERATION = 6
#: In the login modes a protected operation only ever answers 401 without credentials: a couple
#: of requests show that; the public ones (login, registration...) get the full share.
EXAMPLES_WHEN_LOCKED = 2
TIME_BUDGET_SECONDS = 45.0
URLISH = re.compile(r"(?i)(url|uri|host|endpoint|webhook|callback|base_?path|proxy)")


def _property_names(schema: Any, components: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    """Every property name reachable from ``schema`` (following component refs once)."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                names |= _property_names(components.get(name, {}), components, seen)
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= _property_names(value, components, seen)
    elif isinstance(schema, list):
        for item in schema:
            names |= _property_names(item, components, seen)
    return names


def _reaches_out(raw_operation: dict[str, Any], components: dict[str, Any]) -> bool:
    inputs = [raw_operation.get("requestBody", {}), raw_operation.get("parameters", [])]
    return any(URLISH.search(name) for name in _property_names(inputs, components)) or any(
        URLISH.search(p.get("name", "")) for p in raw_operation.get("parameters", [])
    )


@pytest.mark.parametrize("auth_mode", ["local", "multi-user", "local-password"])
def test_no_generated_request_gets_a_server_error(make_full_kernel: Any, serve: Any, auth_mode: str) -> None:
    kernel = make_full_kernel(auth={"mode": auth_mode}) if auth_mode == "local" else _login_mode_kernel(make_full_kernel, auth_mode)
    app = create_app(kernel)
    with serve(app) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        raw = schema.raw_schema
        components = raw.get("components", {}).get("schemas", {})
        failures: list[str] = []
        fuzzed: list[str] = []
        skipped: list[str] = []
        statuses: collections.Counter[int] = collections.Counter()
        started = time.monotonic()
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            raw_op = raw["paths"][operation.path][operation.method.lower()]
            if raw_op.get("x-websocket") or _reaches_out(raw_op, components):
                skipped.append(label)
                continue
            if time.monotonic() - started > TIME_BUDGET_SECONDS:
                skipped.append(f"{label} (time budget)")
                continue

            locked = auth_mode != "local" and raw_op.get("x-auth", "public") != "public"

            @settings(
                max_examples=EXAMPLES_WHEN_LOCKED if locked else EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                response = case.call(base_url=base_url, timeout=15)
                statuses[response.status_code] += 1
                assert response.status_code < 500, (
                    f"{label} answered {response.status_code}: {response.text[:500]}\n"
                    f"reproduce: {case.as_curl_command()}"
                )

            try:
                check()
            except AssertionError as exc:
                failures.append(str(exc))
            fuzzed.append(label)
    print(f"fuzzed {len(fuzzed)} operations, {sum(statuses.values())} requests {dict(statuses)}; skipped: {skipped}")
    assert fuzzed, "no operation was fuzzed"
    # The requests really reached the routes: some succeeded, some were rejected as invalid.
    assert any(200 <= s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses), statuses
    if auth_mode != "local":
        assert statuses[401] > 0, statuses
    assert "POST /api/server/restart" in fuzzed and "GET /metrics" in fuzzed
    assert not failures, "\n\n".join(failures)


def _login_mode_kernel(make_full_kernel: Any, mode: str) -> Any:
    from comfytavern.kernel import StartupError

    try:
        return make_full_kernel(auth={"mode": mode})
    except StartupError as exc:
        if "no auth mode named" in str(exc):
            pytest.skip(f"the {mode!r} auth mode is not installed")
        raise
