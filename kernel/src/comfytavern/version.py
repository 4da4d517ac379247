"""Single source of the kernel version, which is also the hook API version (semver)."""

__version__ = "0.1.0"
HOOK_API_VERSION = __version__
