"""Account-backed identity for the login-based auth modes and the users plugin.

- :mod:`comfytavern_accounts.identity`: :class:`~comfytavern_accounts.identity.AccountIdentity`
  (service keys, session cookies, password checks), ``AuthSettings`` and the value checks;
- :mod:`comfytavern_accounts.passwords`: Argon2id hashing, session tokens, the service-key format;
- :mod:`comfytavern_accounts.secrets`: the master keyring for external credentials and the
  service-key pepper (the ``SECRETS`` service);
- :mod:`comfytavern_accounts.throttle`: login throttling that holds under parallel attempts;
- :mod:`comfytavern_accounts.testing`: fault injection for tests of password-checking code.

A small library those plugins depend on (plugins never import each other), kept out of the kernel
because only they know accounts; the kernel keeps the mechanisms they build on (the auth
interface, the accounts storage Protocol, typed services).
"""
