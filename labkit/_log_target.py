"""Where a round log lives: a file path (SQLite) or a database URL (PostgreSQL).

Kept apart from :mod:`labkit.roundlog`, and free of torch, so that ``labkit app`` can tell a URL
from a path, and name it without its password, before it starts anything.
"""

from __future__ import annotations

import re
from typing import TypeGuard
from urllib.parse import urlsplit

__all__ = ["URL_RE", "is_database_url", "redact_url"]

#: A scheme followed by "://": a URL, never a file path.
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_database_url(target: object) -> TypeGuard[str]:
    """Whether ``target`` names a PostgreSQL database (``postgresql://…`` or ``postgres://…``).

    Anything else that :class:`~labkit.roundlog.RoundLog` accepts is a file path (SQLite).
    """
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs; anything but a URL comes back as is.

    The password goes wherever it is given: ``postgresql://ada:secret@db.lab/labkit`` becomes
    ``postgresql://ada@db.lab/labkit``, and a ``password`` or ``sslpassword`` query parameter is
    left out.
    """
    if not URL_RE.match(url):
        return url
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}@{hosts}" if at else parts.netloc
    query = "&".join(
        p
        for p in parts.query.split("&")
        if p and p.partition("=")[0].lower() not in ("password", "sslpassword")
    )
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )
