"""``auren serve-ws``: the WebSocket feed and HTTP API on one port.

See docs/websocket.md (protocol, close codes) and docs/http-api.md (endpoints).
"""

from __future__ import annotations

from .app import Server, ServerConfig
from .auth import AuthError, KeyRing, RefreshStore, TokenPair, issue_pair, verify
from .protocol import Subscription

__all__ = [
    "AuthError",
    "KeyRing",
    "RefreshStore",
    "Server",
    "ServerConfig",
    "Subscription",
    "TokenPair",
    "issue_pair",
    "verify",
]
