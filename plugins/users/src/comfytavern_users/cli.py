"""Account commands: ``create-user``, ``set-password``, ``list-users``, ``create-key``,
``revoke-key`` and ``rotate-master-key``. Each runs inside the kernel's lifespan (storage open)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

import anyio.to_thread

from comfytavern.records import CliCommand
from comfytavern.revocation import Revocation
from comfytavern.storage.accounts import AccountConflict, AccountStore, UserChanges, UserRecord, iso_utc, utc_now
from comfytavern_accounts.identity import check_new_password, check_scope, check_username, new_user_id
from comfytavern_accounts.passwords import PasswordHasher, parse_service_key
from comfytavern_accounts.secrets import CredentialDecryptError, Keyring, KeyringError
from comfytavern_users.keys import known_scope_groups, mint_key
from comfytavern_users.service import accounts_for

__all__ = ["commands"]

SINGLE_USER_ID = "default_user"


class CommandFailed(Exception):
    """A command cannot do what was asked; the message is printed to stderr."""


def _store(kernel: Any) -> AccountStore:
    store = accounts_for(kernel).store
    if store is None:
        raise CommandFailed("storage.accounts is null in the configuration; there are no accounts to manage")
    return store


def _hasher(kernel: Any) -> tuple[PasswordHasher, int]:
    identity = getattr(kernel.auth, "identity", None)
    if identity is not None:
        return identity.hasher, identity.settings.password_min_length
    return PasswordHasher(), 8


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CommandFailed("no password on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandFailed("no terminal to ask for the password on: pass --password-stdin and pipe it in")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise CommandFailed("the two passwords differ")
    return first


async def _find_user(kernel: Any, store: AccountStore, who: str | None) -> UserRecord:
    if who is None:
        if kernel.config.auth.mode == "multi-user":
            raise CommandFailed("name the user (username or id): the multi-user mode has no default user")
        who = SINGLE_USER_ID
    user = await store.get_user(who) or await store.get_user_by_username(who)
    if user is None and who == SINGLE_USER_ID:
        user = UserRecord(id=SINGLE_USER_ID, username="本地用户", is_admin=True, created_at=utc_now())
        await store.create_user(user)
    if user is None:
        raise CommandFailed(f"no user {who!r} (give a username or a user id; see `comfytavern list-users`)")
    return user


def _password_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")


# -- commands ---------------------------------------------------------------------------------
async def create_user(kernel: Any, args: argparse.Namespace) -> int:
    store = _store(kernel)
    try:
        username = check_username(args.username)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    hasher, min_length = _hasher(kernel)
    try:
        password = check_new_password(_read_password(args), min_length)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    user = UserRecord(
        id=new_user_id(),
        username=username,
        password_hash=await hasher.hash(password),
        is_admin=bool(args.admin),
        created_at=utc_now(),
    )
    try:
        await store.create_user(user)
    except AccountConflict as exc:
        raise CommandFailed(str(exc)) from None
    role = "administrator" if user.is_admin else "user"
    print(f"created {role} {user.username!r} (id {user.id})")
    if kernel.config.auth.mode != "multi-user":
        print(f"note: auth mode is {kernel.config.auth.mode!r}; accounts log in only in the 'multi-user' mode")
    return 0


async def set_password(kernel: Any, args: argparse.Namespace) -> int:
    store = _store(kernel)
    user = await _find_user(kernel, store, args.user)
    hasher, min_length = _hasher(kernel)
    try:
        password = check_new_password(_read_password(args), min_length)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    await store.update_user(user.id, UserChanges(password_hash=await hasher.hash(password)))
    ended = await store.delete_user_sessions(user.id)
    # Reaches running servers only through a bus (the distributed plugin); otherwise their
    # sockets notice at their next message.
    await kernel.revocations.announce(Revocation.sessions(user.id))
    print(f"password set for {user.username!r} (id {user.id}); {ended} session(s) ended")
    return 0


async def list_users(kernel: Any, args: argparse.Namespace) -> int:
    store = _store(kernel)
    for user in await store.list_users():
        flags = ",".join(f for f, on in (("admin", user.is_admin), ("password", user.password_hash is not None)) if on)
        print(f"{user.id}\t{user.username}\t{iso_utc(user.created_at)}\t{flags or '-'}")
    return 0


async def create_key(kernel: Any, args: argparse.Namespace) -> int:
    store = _store(kernel)
    user = await _find_user(kernel, store, args.user)
    known = known_scope_groups(kernel.scope_groups, kernel.plugin_routes()) if args.scope else set()
    scopes: list[str] = []
    for raw in args.scope or ["*"]:
        try:
            value = check_scope(raw.strip(), known)
        except ValueError as exc:
            raise CommandFailed(str(exc)) from None
        if value not in scopes:
            scopes.append(value)
    name = args.name.strip() if args.name else None
    if name is not None and not 1 <= len(name) <= 100:
        raise CommandFailed("the key name must be 1 to 100 characters")
    created = await mint_key(accounts_for(kernel), store, user.id, name, tuple(scopes))
    print(f"created key {created.id} for {user.username!r} with scopes {', '.join(scopes)}", file=sys.stderr)
    print("the secret is shown only now; store it safely:", file=sys.stderr)
    print(created.secret)
    return 0


async def revoke_key(kernel: Any, args: argparse.Namespace) -> int:
    store = _store(kernel)
    given = args.key.strip()
    key_id = given
    parts = parse_service_key(given)
    lookup = parts.lookup_id if parts else (given[len("ctsk_"):] if given.startswith("ctsk_") else None)
    if lookup is not None:
        found = await store.resolve_service_key(lookup)
        if found is None:
            raise CommandFailed(f"no service key with the prefix ctsk_{lookup}")
        key_id = found[0].id
    if not await store.delete_service_key(key_id, user_id=None):
        raise CommandFailed(f"no service key {given!r} (give its id, its prefix ctsk_... or the whole key)")
    await kernel.revocations.announce(Revocation.key(key_id))
    print(f"revoked service key {key_id}")
    return 0


async def rotate_master_key(kernel: Any, args: argparse.Namespace) -> int:
    accounts = accounts_for(kernel)
    store = _store(kernel)
    secrets = accounts.secrets
    try:
        if secrets.keyring_from_env:
            ring = await secrets.keyring(reload=True)
            print(f"master key from the environment: re-encrypting everything under key {ring.current}")
        else:
            old = await secrets.keyring(reload=True)
            ring = await anyio.to_thread.run_sync(secrets.add_file_key)
            print(f"new master key {ring.current} written to {secrets.master_key_file} (previous: {old.current})")
    except KeyringError as exc:
        raise CommandFailed(str(exc)) from None
    moved = kept = 0
    failed: list[str] = []
    for record in await store.all_credentials():
        if Keyring.key_id_of(record.ciphertext) == ring.current:
            kept += 1
            continue
        try:
            plain = ring.decrypt(record.ciphertext, user_id=record.user_id, record_id=record.id, service=record.service_name)
        except CredentialDecryptError as exc:
            failed.append(f"{record.id} ({record.service_name}): {exc}")
            continue
        new = ring.encrypt(plain, user_id=record.user_id, record_id=record.id, service=record.service_name)
        if await store.replace_ciphertext(record.id, record.ciphertext, new):
            moved += 1
    print(f"re-encrypted {moved} credential(s); {kept} already used the current key")
    for line in failed:
        print(f"could not decrypt {line}", file=sys.stderr)
    if failed:
        print("old keys were kept because some credentials could not be re-encrypted", file=sys.stderr)
        return 1
    if args.prune:
        if secrets.keyring_from_env:
            print("all credentials use the current key: CT_MASTER_KEY_PREVIOUS can now be removed")
        else:
            await anyio.to_thread.run_sync(secrets.prune_file_keys, set())
            print("removed every old key from the key file")
    return 0


def _wrap(fn: Any) -> Any:
    async def run(kernel: Any, args: argparse.Namespace) -> int:
        try:
            return int(await fn(kernel, args))
        except CommandFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    run.__name__ = fn.__name__
    return run


def _configure_create_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username")
    parser.add_argument("--admin", action="store_true", help="make the account an administrator")
    _password_arg(parser)


def _configure_set_password(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", nargs="?", help="username or id (default: the single-user modes' default_user)")
    _password_arg(parser)


def _configure_create_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", nargs="?", help="username or id (default: default_user)")
    parser.add_argument("--name", help="a label for the key")
    parser.add_argument("--scope", action="append", help="a scope such as runs:write (repeatable; default '*')")


def _configure_revoke_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", help="the key's id, its prefix (ctsk_XXXXXXXXXXXX) or the whole key")


def _configure_rotate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prune", action="store_true", help="afterwards drop the old keys from the key file")


def commands() -> list[CliCommand]:
    return [
        CliCommand("create-user", "create an account (multi-user mode)", _wrap(create_user), _configure_create_user),
        CliCommand("set-password", "set a user's password (default: the access password)", _wrap(set_password), _configure_set_password),
        CliCommand("list-users", "list every account", _wrap(list_users)),
        CliCommand("create-key", "create a service API key and print it once", _wrap(create_key), _configure_create_key),
        CliCommand("revoke-key", "delete a service API key", _wrap(revoke_key), _configure_revoke_key),
        CliCommand(
            "rotate-master-key",
            "re-encrypt every stored credential under a new master key",
            _wrap(rotate_master_key),
            _configure_rotate,
        ),
    ]
