"""Which hosts a webhook batch may be posted to, judged on the host as the URL writes it.

Refused: a link-local address (169.254.0.0/16, where cloud metadata services answer, and
fe80::/10), an unspecified one (0.0.0.0, ::), an IPv4-mapped IPv6 form of either, and any host
whose last label is a number but which is not written as a plain dotted quad of four decimal
numbers (``a.b.c.d``, no leading zeros).

Why the last rule: the system resolver reads a host name that looks like a number as an IPv4
address, with the legacy ``inet_aton`` forms: one to four parts, each decimal, hexadecimal
(``0x``) or octal (a leading ``0``), the last filling the remaining bytes. ``2852039166`` and
``0xa9fea9fe`` are 169.254.169.254 to it, ``0`` is 0.0.0.0 and ``127.1`` is 127.0.0.1, while
:mod:`ipaddress` takes them for names; so the address check was bypassed. Rather than reproduce
one resolver's reading (they differ from one C library to another, and browsers follow the WHATWG
URL rules instead), such a host is refused outright: no receiver needs it, and the four-number
form of the same address is judged like any address. The test for "a number" is the WHATWG URL
standard's "ends in a number" (the last label, after one trailing dot, all decimal digits or
``0x`` and hex digits): a DNS name never ends so, since no top-level domain is numeric.

A host *name* is not resolved: what it resolves to is the configuring admin's choice.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

_NUMBER: Final = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)\Z")

NUMERIC_HOST: Final = (
    "the url's host is a number not written as four decimal numbers a.b.c.d (the system "
    "resolver reads such a host as an IPv4 address); write the address as a.b.c.d"
)
LINK_LOCAL: Final = (
    "the url names a link-local or unspecified address (cloud metadata services live "
    "there); personal data is never posted to one"
)


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return bool(_NUMBER.match(labels[-1]))


def host_problem(host: str) -> str | None:
    """Why no batch may be posted to ``host`` (a URL's host, IPv6 without brackets), or None.
    The reason never quotes the host."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    if _ends_in_number(host):
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            return NUMERIC_HOST
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None  # a name
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address.is_link_local or address.is_unspecified:
        return LINK_LOCAL
    return None
