"""Credentials never printed or stored: ``redact_uri`` hides them in URIs (and in text quoting URIs).

Used wherever a tracking URI or another configured URI is shown or written: CLI errors and
``status --json``, Dagster metadata, the serving bundle, alerts. Standard library only.
"""

from __future__ import annotations

import re

_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")
_SECRET_PARAMS = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|token|access_token|secret|api_key|apikey|key|sig|signature)=)[^&;#\s]+"
)


def _hide_userinfo(m: re.Match) -> str:
    """``user:password@`` -> ``user:***@``; a lone ``token@`` (no colon) -> ``***@``."""
    user, sep, _ = m.group("userinfo").partition(":")
    return f"{m.group('scheme')}{user}:***@" if sep else f"{m.group('scheme')}***@"


def redact_uri(text: str) -> str:
    """``text`` with credentials in URIs replaced by ``***``: ``user:pass@`` and secret query parameters.

    ``postgresql://app:s3cret@db/mlflow`` -> ``postgresql://app:***@db/mlflow``,
    ``https://ghp_token@host`` -> ``https://***@host``; works on any string
    (an error message that quotes a URI). The one place the project hides URI credentials.
    """
    if not text:
        return text
    out = _URI_CREDENTIALS.sub(_hide_userinfo, str(text))
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}***", out)
