"""The SSRF guard: address classes, the multi-user rule, operator overrides, pinning."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from comfytavern import NodeContext
from comfytavern_nodes_llm import generic_llm_request
from comfytavern_nodes_llm.errors import LlmConfigError, UnsafeBaseUrl
from comfytavern_nodes_llm.ssrf import address_is_forbidden, guard_url, parse_allowlist, pinned_target

pytestmark = pytest.mark.anyio

FORBIDDEN = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.20",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert address_is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not address_is_forbidden(ipaddress.ip_address(address))


def test_allowlist_opens_specific_networks() -> None:
    allow = parse_allowlist(["10.0.0.0/24", "::1"])
    assert not address_is_forbidden(ipaddress.ip_address("10.0.0.7"), allow)
    assert not address_is_forbidden(ipaddress.ip_address("::1"), allow)
    assert address_is_forbidden(ipaddress.ip_address("10.0.1.7"), allow)
    assert address_is_forbidden(ipaddress.ip_address("127.0.0.1"), allow)


def test_bad_allowlist_entry_names_the_key() -> None:
    with pytest.raises(LlmConfigError, match="private_base_url_allowlist"):
        parse_allowlist(["not-a-network"])


async def test_guard_refuses_loopback_names_and_literals() -> None:
    for url in ("http://127.0.0.1:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1", "https://169.254.169.254/v1"):
        with pytest.raises(UnsafeBaseUrl, match="non-public address"):
            await guard_url(httpx.URL(url), enforce=True)


async def test_guard_is_off_when_not_enforced() -> None:
    url = httpx.URL("http://127.0.0.1:9/v1/chat/completions")
    target = await guard_url(url, enforce=False)
    assert target.url == url and target.headers == {}


async def test_unresolvable_host_is_a_clear_error() -> None:
    with pytest.raises(LlmConfigError, match="cannot resolve the LLM host"):
        await guard_url(httpx.URL("http://no-such-host.invalid/v1"), enforce=True)


def test_pinned_target_keeps_name_for_host_and_sni() -> None:
    target = pinned_target(httpx.URL("http://llm.example:8080/v1/chat/completions"), ipaddress.ip_address("93.184.216.34"))
    assert str(target.url) == "http://93.184.216.34:8080/v1/chat/completions"
    assert target.headers == {"Host": "llm.example:8080"}
    assert target.extensions == {"sni_hostname": "llm.example"}
    v6 = pinned_target(httpx.URL("http://llm.example/v1"), ipaddress.ip_address("2001:db8::1"))
    assert str(v6.url) == "http://[2001:db8::1]/v1" and v6.headers == {"Host": "llm.example"}


def _inputs(base_url: str, model: str = "echo") -> dict[str, Any]:
    return {
        "messages": '[{"role": "user", "content": "ping"}]',
        "activated_model_id": model,
        "api_settings": {"base_url": base_url, "api_key": "sk-x"},
    }


async def test_multi_user_mode_refuses_a_loopback_base_url(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory(auth_mode="multi-user")
    with pytest.raises(UnsafeBaseUrl, match="multi-user mode"):
        await runner(generic_llm_request, _inputs(fake.base_url), ctx)
    assert fake.requests == []


async def test_single_user_mode_allows_loopback(fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    _chunks, out = await runner(generic_llm_request, _inputs(fake.base_url), ctx_factory(auth_mode="local"))
    assert out["responseText"] == "ping"


async def test_operator_can_allow_private_base_urls(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory(auth_mode="multi-user", llm={"allow_private_base_urls": True})
    _chunks, out = await runner(generic_llm_request, _inputs(fake.base_url), ctx)
    assert out["responseText"] == "ping"


async def test_allowlisted_name_is_pinned_to_the_vetted_address(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory(auth_mode="multi-user", llm={"private_base_url_allowlist": ["127.0.0.0/8", "::1"]})
    url = f"http://localhost:{fake.port}/v1"
    _chunks, out = await runner(generic_llm_request, _inputs(url), ctx)
    assert out["responseText"] == "ping"
    # The connection went to the vetted IPv4 address; the name travelled in the Host header.
    assert fake.requests[0].headers["host"] == f"localhost:{fake.port}"


@pytest.mark.parametrize("stream", [True, False])
async def test_redirects_are_not_followed(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any, stream: bool
) -> None:
    inputs = {**_inputs(f"http://127.0.0.1:{fake.port}/moved/v1"), "stream": stream}
    with pytest.raises(Exception, match=r"redirected \(HTTP 307\) to /v1/chat/completions; redirects are not followed"):
        await runner(generic_llm_request, inputs, ctx_factory())
    assert [r.path for r in fake.requests] == ["/moved/v1/chat/completions"]
