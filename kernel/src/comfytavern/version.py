"""Single source of the kernel version, which is also the hook API version (semver)."""

__version__ = "0.1.0"
HOOK_API_VERSION = __version__
#: The app version the editor writes into projects and workflows ("version"/"schemaVersion").
APP_VERSION = "0.0.7"
