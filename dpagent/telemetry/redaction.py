"""What counts as a secret, in one place: logs, span attributes and metadata use it.

Values under secret-looking keys, and bearer/basic credentials inside free text,
become ``[REDACTED]`` before they leave the process.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "SECRET_KEY_PATTERN", "is_secret_key", "redact_text", "redact_value"]

REDACTED = "[REDACTED]"

# Matched against the whole key, case-insensitively, with - and _ treated alike:
# "X-Auth-Token" (BigCommerce), "authorization", "api_key", "client_secret", ...
SECRET_KEY_PATTERN = re.compile(
    r"(^|[-_.])("
    r"authorization|auth[-_]?token|access[-_]?token|refresh[-_]?token|token|"
    r"password|passwd|pwd|secret|client[-_]?secret|api[-_]?key|apikey|"
    r"private[-_]?key|cookie|set[-_]cookie|session[-_]?id|credentials?"
    r")($|[-_.])",
    re.IGNORECASE,
)

# "Bearer abc.def", "Authorization: Basic ...", "token=...", "api_key: ...", and the
# quoted forms a dict's repr or a JSON body take ("password": "x", 'secret': 'y').
# The key may follow any non-alphanumeric character, so "csrf_token=..." is caught
# too; no nested quantifier, so matching stays linear on long messages.
_TEXT_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(
        r"(?i)(?<![A-Za-z0-9])"
        r"(authorization|x-auth-token|auth[_-]?token|access[_-]?token|refresh[_-]?token|"
        r"client[_-]?secret|api[_-]?key|apikey|token|password|passwd|secret)"
        r"([\"']?\s*[=:]\s*)(?:(?:bearer|basic)\s+)?(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
    ),
)


# Both text patterns need whitespace, "=" or ":"; ASCII text without any of them
# (ids, SKUs, most field values) is returned without running them.
_TRIGGERS = frozenset(" \t\n\r\f\v\x1c\x1d\x1e\x1f=:")


@functools.lru_cache(maxsize=4096)  # keys repeat: logs and spans ask about the same few
def is_secret_key(key: str) -> bool:
    return SECRET_KEY_PATTERN.search(key) is not None


def redact_text(text: str) -> str:
    """Remove credentials embedded in free text (log messages, error strings)."""
    if not text or (text.isascii() and _TRIGGERS.isdisjoint(text)):
        return text
    text = _TEXT_PATTERNS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _TEXT_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


_MAX_DEPTH = 20


def redact_value(key: str, value: Any, _depth: int = 0) -> Any:
    """``value`` with secrets removed: whole value for secret keys, recursively.

    Containers nested deeper than 20 levels (a cycle, say) end in ``"[...]"``.
    """
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (Mapping, list, tuple)):
        if _depth >= _MAX_DEPTH:
            return "[...]"
        if isinstance(value, Mapping):
            return {str(k): redact_value(str(k), v, _depth + 1) for k, v in value.items()}
        return [redact_value(key, v, _depth + 1) for v in value]
    return value
