#!/usr/bin/env python3
"""One-command bootstrap: create .venv, install the workspace, then serve or test.

    python3 scripts/dev.py serve [serve options]   # install and run the server on 127.0.0.1:3233
    python3 scripts/dev.py test [pytest options]   # install (with dev tools) and run every test
                                                   # (as root also Debian's chromium, for tests/e2e)

Uses only the standard library and pip, so it works on a fresh machine with Python 3.11+.
Re-installs only when a pyproject.toml changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("CT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def members() -> list[Path]:
    found = [ROOT / "kernel"]
    for group in ("plugins", "node_packs"):
        found += sorted(p.parent for p in (ROOT / group).glob("*/pyproject.toml"))
    return found


def fingerprint(dev: bool) -> str:
    digest = hashlib.sha256(f"dev={dev};py={sys.version_info[:2]}".encode())
    for path in [ROOT / "pyproject.toml", *(m / "pyproject.toml" for m in members())]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def install(dev: bool) -> None:
    if sys.version_info < (3, 11):
        sys.exit("ComfyTavern Server needs Python 3.11 or newer")
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / ".comfytavern-installed"
    wanted = fingerprint(dev)
    # A dev install also satisfies a plain one.
    if stamp.exists() and stamp.read_text().strip() in {wanted, fingerprint(True)}:
        return
    quiet = ["--quiet", "--disable-pip-version-check"]
    run(PY, "-m", "pip", "install", *quiet, "--upgrade", "pip", "hatchling>=1.24", "editables")
    args: list[str] = []
    for member in members():
        args += ["-e", str(member)]
    args += ["-e", f"{ROOT}[dev]" if dev else str(ROOT)]
    print(f"installing {len(members())} workspace packages", flush=True)
    run(PY, "-m", "pip", "install", *quiet, "--no-build-isolation", *args)
    stamp.write_text(wanted)


def ensure_browser() -> None:
    """Debian's chromium for the real-browser tests (tests/e2e), installed with apt-get when
    missing and possible (root). Without it those tests are skipped, saying how to enable them."""
    if Path("/usr/bin/chromium").exists():
        return
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print("note: Debian's chromium is missing, so the browser tests will be skipped; "
              "enable them with: apt-get install -y chromium", flush=True)
        return
    print("installing Debian's chromium for the browser tests (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        if subprocess.run(cmd, env=env).returncode != 0:
            print("note: apt-get could not install chromium; the browser tests will be skipped", flush=True)
            return


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "install"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    install(dev=command != "serve")
    if command == "install":
        return 0
    if command == "serve":
        os.chdir(ROOT)
        exe = BIN / "comfytavern"
        os.execv(str(exe), [str(exe), "serve", *rest])
    ensure_browser()
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    result = subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
