"""Packaging: every distribution carries the MIT licence and one set of version floors, and
``scripts/dev.py build`` makes wheels a node pack's CI can install without this repository."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = [ROOT / "kernel", *sorted(p.parent for p in ROOT.glob("libs/*/pyproject.toml")),
           *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml")),
           *sorted(p.parent for p in ROOT.glob("node_packs/*/pyproject.toml"))]


def project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.mark.parametrize("folder", MEMBERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_distribution_has_the_licence(folder: Path) -> None:
    meta = project(folder)
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (folder / "LICENSE").read_text(encoding="utf-8") == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_one_set_of_version_floors() -> None:
    """A library required by several distributions is required with the same specifier by all."""
    seen: dict[str, dict[str, list[str]]] = {}
    for folder in [ROOT, *MEMBERS]:
        meta = project(folder)
        requirements = list(meta.get("dependencies", []))
        for extra in meta.get("optional-dependencies", {}).values():
            requirements += extra
        for raw in requirements:
            req = Requirement(raw)
            seen.setdefault(req.name.lower(), {}).setdefault(str(req.specifier), []).append(folder.name)
    disagreeing = {name: specs for name, specs in seen.items() if len(specs) > 1}
    assert disagreeing == {}


@pytest.mark.slow
def test_wheels_build_and_the_kernel_installs_in_a_fresh_environment(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    built = subprocess.run([sys.executable, str(ROOT / "scripts" / "dev.py"), "build", "--out", str(out)],
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = {p.name.split("-")[0] for p in out.glob("*.whl")}
    expected = {project(m)["name"].replace("-", "_") for m in MEMBERS}
    assert wheels == expected
    # What a node pack's CI does: a fresh environment, the kernel wheel (with its testing extra, which
    # pulls comfytavern-testing) and the local auth mode from the wheels, the pack itself, then its tests.
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pack_wheels = tmp_path / "pack"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(pack_wheels), str(ROOT / "docs" / "examples" / "echo-pack")], check=True)
    kernel_wheel = next(out.glob("comfytavern-*.whl"))
    auth_wheels = [next(out.glob("comfytavern_auth_local-*.whl")), next(out.glob("comfytavern_accounts-*.whl")),
                   next(out.glob("comfytavern_testing-*.whl"))]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CT_")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{kernel_wheel}[testing]", *map(str, auth_wheels), *map(str, pack_wheels.glob("*.whl"))],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert install.returncode == 0, install.stderr
    check = (
        "import tempfile, pathlib\n"
        "from comfytavern_testing import client_for, make_kernel\n"
        "kernel = make_kernel(pathlib.Path(tempfile.mkdtemp()), storage={'projects': None, 'accounts': None, 'runs': None})\n"
        "assert 'echo:Echo' in kernel.registry.current, kernel.plugin_rows()\n"
        "with client_for(kernel) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "import comfytavern; print('ok', comfytavern.__file__)\n"
    )
    ran = subprocess.run([str(python), "-c", check], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("ok ") and str(env_dir) in ran.stdout  # the wheel, not this checkout
    version = subprocess.run([str(env_dir / "bin" / "comfytavern"), "version"], capture_output=True, text=True, env=env)
    assert version.stdout.startswith("comfytavern ")
