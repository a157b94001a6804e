"""Pseudonymous identity tokens: keyed, versioned HMAC-SHA256 over the normalised value.

The kind is part of the HMAC input, so the same string as an email and as a customer id gives two
different tokens. Tokens of older key versions stay computable, so lookups still find subjects
tokenised before a pseudonym-key rotation.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from hashlib import sha256
from typing import Any, NamedTuple

from cdp.crypto.normalize import IdentityKind, normalize
from cdp.errors import KeyMaterialError


class Token(NamedTuple):
    """A token and the pseudonym-key version that produced it (repr hides the value)."""

    kind: IdentityKind
    value: str
    key_version: int

    def __repr__(self) -> str:
        return f"Token(kind={self.kind.value!r}, key_version={self.key_version})"


class Tokenizer:
    """Computes tokens with pre-keyed HMAC objects (one per key version)."""

    def __init__(self, keys: Mapping[int, bytes], *, current: int, default_region: str) -> None:
        if current not in keys:
            raise KeyMaterialError("the current pseudonym key version has no key")
        self._base = {v: hmac.new(k, digestmod=sha256) for v, k in keys.items()}
        # pre-keyed and pre-fed with "<kind>\x00" per (version, kind): one copy+update per token
        self._keyed: dict[tuple[int, IdentityKind], Any] = {}
        for v, base in self._base.items():
            for kind in IdentityKind:
                mac = base.copy()
                mac.update(kind.value.encode() + b"\x00")
                self._keyed[(v, kind)] = mac
        self._by_kind = {
            kind: [self._keyed[(v, kind)] for v in sorted(self._base)] for kind in IdentityKind
        }
        self.current = current
        self.default_region = default_region

    def __repr__(self) -> str:
        return f"Tokenizer(versions={sorted(self._base)}, current={self.current})"

    @property
    def versions(self) -> list[int]:
        return sorted(self._base)

    def token_of_normalized(
        self, kind: IdentityKind, normalized: str, *, version: int | None = None
    ) -> Token:
        """Token of an already-normalised value."""
        ver = self.current if version is None else version
        try:
            mac = self._keyed[(ver, kind)].copy()
        except KeyError as exc:
            raise KeyMaterialError(f"no pseudonym key of version {ver}") from exc
        mac.update(normalized.encode())
        return Token(kind, mac.hexdigest(), ver)

    def values_of_normalized(self, kind: IdentityKind, normalized: str) -> list[str]:
        """The token values of an already-normalised value under every key version, in the
        order of :attr:`versions` (the batch hot path: no :class:`Token` objects)."""
        data = normalized.encode()
        out = []
        for mac in self._by_kind[kind]:
            mac = mac.copy()
            mac.update(data)
            out.append(mac.hexdigest())
        return out

    def token(self, kind: IdentityKind | str, raw: str) -> Token:
        """Normalise ``raw`` and tokenise it under the current key version."""
        k = IdentityKind(kind)
        return self.token_of_normalized(k, normalize(k, raw, default_region=self.default_region))

    def lookup_tokens(self, kind: IdentityKind | str, raw: str) -> list[Token]:
        """The tokens of ``raw`` under every known key version, newest first (for lookups)."""
        k = IdentityKind(kind)
        normalized = normalize(k, raw, default_region=self.default_region)
        return [
            self.token_of_normalized(k, normalized, version=v)
            for v in sorted(self._base, reverse=True)
        ]
