"""Typed services: the container's semantics, the start-up check, and what nodes and the CLI see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from comfytavern import MissingService, NodeContext, Principal, ServiceKey, Services
from comfytavern.services import CONFIG, KERNEL_SERVICES, SCHEDULER, ServiceCatalog, provides, requires, uses
from comfytavern_testing import NO_STORAGE, client_for, config_services, make_config, make_kernel

COUNTER: ServiceKey[list[int]] = ServiceKey("counter", "a test list")


def test_provide_require_lookup_withdraw() -> None:
    services = Services()
    assert services.lookup(COUNTER) is None and COUNTER not in services
    with pytest.raises(MissingService, match="service 'counter' is not available on this server"):
        services.require(COUNTER)
    first: list[int] = [1]
    services.provide(COUNTER, first)
    assert services.require(COUNTER) is first and COUNTER in services
    newer: list[int] = [2]
    services.provide(COUNTER, newer)
    services.withdraw(COUNTER, first)  # an older provider leaving does not remove the newer value
    assert services.require(COUNTER) is newer
    services.withdraw(COUNTER, newer)
    assert COUNTER not in services


def test_setdefault_creates_once() -> None:
    services = Services()
    made: list[int] = []

    def factory() -> list[int]:
        made.append(1)
        return []

    assert services.setdefault(COUNTER, factory) is services.setdefault(COUNTER, factory)
    assert made == [1]


def test_keys_are_identities_not_names() -> None:
    twin: ServiceKey[list[int]] = ServiceKey("counter")
    services = Services()
    services.provide(COUNTER, [1])
    assert twin not in services


def test_catalog_lists_providers_and_users() -> None:
    catalog = ServiceCatalog([*KERNEL_SERVICES, ("a", provides(COUNTER)), ("b", requires(COUNTER)), ("c", uses(COUNTER))])
    row = next(r for r in catalog.rows() if r["service"] == "counter")
    assert (row["providers"], row["users"], row["requiredBy"]) == (["a"], ["b", "c"], ["b"])
    assert catalog.of("b") == {"provides": [], "uses": ["counter"]}
    assert catalog.missing() == []
    lonely = ServiceCatalog([("b", requires(COUNTER))])
    assert lonely.missing() == ["service 'counter' is required by b but no installed plugin provides it"]


def test_installed_plugins_declare_what_they_use(tmp_path: Path) -> None:
    """The built-in distributions' declarations: the table a newcomer reads in docs/plugins.md."""
    kernel = make_kernel(tmp_path)
    table = {row["service"]: row for row in kernel.service_catalog.rows()}
    assert table["scheduler"]["providers"] == ["kernel"]
    assert {"executions", "openai-api"} <= set(table["scheduler"]["requiredBy"])
    assert table["credentials"]["providers"] == ["users"]
    assert {"kernel", "llm"} <= set(table["credentials"]["users"])
    assert table["run_queue"]["providers"] == ["distributed"]
    assert table["characters"]["providers"] == ["characters"]
    assert "tavern" in table["config"]["users"]


def test_node_reads_a_service_from_its_context(tmp_path: Path) -> None:
    ctx = NodeContext(prompt_id="p", node_id="n", user=Principal(id="u", username="u"),
                      services=config_services(make_config(tmp_path)))
    assert ctx.service(CONFIG).auth.mode == ctx.services.require(CONFIG).auth.mode == "local"
    empty = NodeContext(prompt_id="p", node_id="n", user=Principal(id="u", username="u"))
    with pytest.raises(LookupError, match="service 'config' is not available"):
        empty.service(CONFIG)


def test_kernel_provides_the_scheduler_while_running(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE)
    assert SCHEDULER not in kernel.services
    with client_for(kernel):
        assert kernel.services.require(SCHEDULER).max_concurrent == kernel.config.execution.max_concurrent_workflows


def test_cli_plugins_shows_the_service_table(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"root": str(tmp_path)}}), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "comfytavern", "plugins", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    lines = [line for line in out.splitlines() if line.startswith("service ")]
    scheduler = next(line for line in lines if line.split()[1] == "scheduler")
    assert "provided by kernel" in scheduler and "executions" in scheduler
    credentials = next(line for line in lines if line.split()[1] == "credentials")
    assert "provided by users" in credentials
    rows = json.loads(subprocess.run(
        [sys.executable, "-m", "comfytavern", "plugins", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout)
    users = next(row for row in rows if row["name"] == "users")
    assert users["provides"] == ["credentials", "secrets"]


def test_docs_list_every_declared_service(tmp_path: Path) -> None:
    """docs/plugins.md and docs/hooks.md show each service the installed distributions declare."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    plugins_md = (docs / "plugins.md").read_text(encoding="utf-8")
    hooks_md = (docs / "hooks.md").read_text(encoding="utf-8")
    for row in make_kernel(tmp_path).service_catalog.rows():
        assert f"(`{row['service']}`)" in plugins_md or f"`{row['service']}`" in plugins_md, row["service"]
        assert f"`{row['service']}`" in hooks_md, row["service"]
