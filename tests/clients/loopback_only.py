"""Installed into the clients' virtualenvs by run.sh (with a .pth file that
imports it at start-up): name resolution answers only for loopback.

The suite's servers are all on 127.0.0.1. A client that is not given an
endpoint (a variable missing from the pod's env) would otherwise look up and
try to reach the real cloud: here it fails at once, with a message that says
so, and the suite never sends anything off this machine.
"""

import socket

_getaddrinfo = socket.getaddrinfo


def _loopback(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return host in ("localhost", "::1") or host.startswith("127.")


def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        raise socket.gaierror(
            socket.EAI_NONAME, "client-compat: only loopback is reachable, not %r" % (host,)
        )
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
