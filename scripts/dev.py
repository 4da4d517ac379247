#!/usr/bin/env python3
"""One-command bootstrap: create .venv, install the workspace, then serve or test.

    python3 scripts/dev.py serve [serve options]   # install and run the server on 127.0.0.1:3233
    python3 scripts/dev.py test [pytest options]   # install (with dev tools), ruff + mypy, every test
                                                   # (as root also Debian's chromium, for tests/e2e)
    python3 scripts/dev.py build [--out DIR]       # wheels of the kernel, every plugin and pack (dist/)

The tests need PostgreSQL (127.0.0.1:5432, trust auth, database "test") and Redis
(127.0.0.1:6379); `test` starts them when they are installed but stopped, and installs them
(Debian packages) on CI or with CT_INSTALL_SERVICES=1. Without them, deselect their tests:
`python3 scripts/dev.py test -m "not postgres and not redis"`.

Uses only the standard library and pip, so it works on a fresh machine with Python 3.11+.
Re-installs only when a pyproject.toml changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("CT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def members() -> list[Path]:
    found = [ROOT / "kernel"]
    for group in ("libs", "plugins", "node_packs"):
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
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run under an older system python
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
    run(PY, "-m", "pip", "install", *quiet, "--upgrade", "pip", "hatchling>=1.27", "editables")
    args: list[str] = []
    for member in members():
        args += ["-e", str(member)]
    args += ["-e", f"{ROOT}[dev]" if dev else str(ROOT)]
    print(f"installing {len(members())} workspace packages", flush=True)
    run(PY, "-m", "pip", "install", *quiet, "--no-build-isolation", *args)
    stamp.write_text(wanted)


# -- test services (PostgreSQL, Redis) ------------------------------------------------------------
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_for(host: str, port: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _answers(host, port):
            return True
        time.sleep(0.3)
    return False


def _may_install() -> bool:
    wanted = os.environ.get("CI") == "true" or os.environ.get("CT_INSTALL_SERVICES") == "1"
    return wanted and shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(*packages: str) -> bool:
    print(f"installing {' '.join(packages)} (Debian packages) for the tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
    done = update.returncode == 0 and subprocess.run(
        ["apt-get", "install", "-y", "-q", *packages], env=env, check=False
    ).returncode == 0
    return done


def _start_postgres(fresh: bool) -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        return
    version = versions[-1]
    if not os.path.isdir(f"/etc/postgresql/{version}/main"):
        subprocess.run(["pg_createcluster", version, "main"], check=False)
        fresh = True
    if fresh:
        # The tests connect over TCP as "postgres" without a password (trust, loopback only).
        hba = Path(f"/etc/postgresql/{version}/main/pg_hba.conf")
        rules = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
        if hba.exists() and rules not in hba.read_text():
            hba.write_text(rules + hba.read_text())
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    if _wait_for("127.0.0.1", 5432) and fresh:
        subprocess.run(["runuser", "-u", "postgres", "--", "createdb", "test"], check=False)


def _start_redis() -> None:
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
         "--save", "", "--appendonly", "no"],
        check=False,
    )


def ensure_test_services(pytest_args: list[str]) -> None:
    """Start PostgreSQL and Redis for the tests when they are installed but not running (and
    install them first on CI, or with CT_INSTALL_SERVICES=1, as root with apt-get). Only the
    default loopback addresses are managed; a server elsewhere is the caller's business."""
    selection = " ".join(pytest_args)
    wanted = {
        "PostgreSQL": ("postgres", os.environ.get("CT_TEST_POSTGRES_DSN", DEFAULT_POSTGRES), 5432),
        "Redis": ("redis", os.environ.get("CT_TEST_REDIS_URL", DEFAULT_REDIS), 6379),
    }
    for label, (marker, url, default_port) in wanted.items():
        if f"not {marker}" in selection:
            continue
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or default_port
        if _answers(host, port):
            continue
        if host not in ("127.0.0.1", "localhost", "::1") or port != default_port:
            print(f"{label} does not answer at {host}:{port}; its tests will fail", file=sys.stderr)
            continue
        binary = "pg_ctlcluster" if marker == "postgres" else "redis-server"
        fresh = False
        if shutil.which(binary) is None:
            if not _may_install() or not _apt_install("postgresql" if marker == "postgres" else "redis-server"):
                print(
                    f"{label} is not installed and not running: its tests will fail. Install it, or run "
                    f'`python3 scripts/dev.py test -m "not postgres and not redis"`',
                    file=sys.stderr,
                )
                continue
            fresh = True
        print(f"starting {label} for the tests", flush=True)
        if marker == "postgres":
            _start_postgres(fresh)
        else:
            _start_redis()
        if not _wait_for(host, port):
            print(f"{label} did not start; its tests will fail", file=sys.stderr)


# -- wheels ----------------------------------------------------------------------------------------
def build(argv: list[str]) -> int:
    """Wheels of the kernel, every plugin and every node pack, for pip elsewhere (a pack's CI)."""
    out = Path(argv[argv.index("--out") + 1]).resolve() if "--out" in argv else ROOT / "dist"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("comfytavern*.whl"):
        old.unlink()
    quiet = ["--quiet", "--disable-pip-version-check"]
    for member in members():
        run(PY, "-m", "pip", "wheel", *quiet, "--no-deps", "--no-build-isolation", "--wheel-dir", out, member)
    wheels = sorted(p.name for p in out.glob("*.whl"))
    print(f"{len(wheels)} wheels in {out}:")
    for name in wheels:
        print(f"  {name}")
    return 0 if len(wheels) == len(members()) else 1


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
    if not argv or argv[0] not in {"serve", "test", "install", "build"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    install(dev=command not in {"serve", "build"})
    if command == "install":
        return 0
    if command == "build":
        return build(rest)
    if command == "test":
        ensure_test_services(rest)
    if command == "serve":
        os.chdir(ROOT)
        exe = BIN / "comfytavern"
        os.execv(str(exe), [str(exe), "serve", *rest])
    ensure_browser()
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    if os.environ.get("CT_SKIP_LINT") != "1" and not lint(env):
        return 1
    result = subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env)
    return result.returncode


def lint(env: dict[str, str]) -> bool:
    """The lint and type gate before the tests: ruff and mypy as configured in pyproject.toml
    (zero findings, or the test command fails). ``CT_SKIP_LINT=1`` skips it for a quick re-run."""
    for name, cmd in (("ruff", [str(PY), "-m", "ruff", "check", "."]), ("mypy", [str(PY), "-m", "mypy"])):
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
        if subprocess.run(cmd, cwd=ROOT, env=env).returncode != 0:
            print(f"{name} reported findings: fix them before the tests run", flush=True)
            return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
