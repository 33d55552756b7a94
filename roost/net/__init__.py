"""Networking: listeners, connections, TLS.  Knows nothing of mail."""

from roost.net.connection import Connection, IdleTimeout, is_loopback
from roost.net.listener import Handler, Listener

__all__ = ["Connection", "Handler", "IdleTimeout", "Listener", "is_loopback"]
