"""Fail fast if test code tries to leave loopback (e.g. a resolver built with
configure=True reads /etc/resolv.conf, or aiosmtplib gets a hostname and calls
getaddrinfo).  Use as a pytest plugin:  -p netguard  (or import in conftest).
Covers Python-level sockets only (not subprocesses like dnsmasq/swaks).
"""

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto
_real_getaddrinfo = socket.getaddrinfo


class NonLoopbackTraffic(AssertionError):
    pass


def _check(addr):
    if not isinstance(addr, tuple):  # AF_UNIX path
        return
    host = addr[0]
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise NonLoopbackTraffic(f"non-numeric destination {host!r}") from None
    if not ip.is_loopback:
        raise NonLoopbackTraffic(f"blocked traffic to {host}")


def _connect(self, addr):
    _check(addr)
    return _real_connect(self, addr)


def _connect_ex(self, addr):
    _check(addr)
    return _real_connect_ex(self, addr)


def _sendto(self, data, *args):
    _check(args[-1])
    return _real_sendto(self, data, *args)


def _getaddrinfo(host, *a, **kw):
    if host not in (None, "localhost", b"localhost"):
        try:
            h = host.decode() if isinstance(host, bytes) else host
            if not ipaddress.ip_address(h.split("%")[0]).is_loopback:
                raise NonLoopbackTraffic(f"getaddrinfo({host!r})")
        except ValueError:
            raise NonLoopbackTraffic(f"getaddrinfo({host!r}) would use system DNS") from None
    return _real_getaddrinfo(host, *a, **kw)


def install():
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.socket.sendto = _sendto
    socket.getaddrinfo = _getaddrinfo


def uninstall():
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex
    socket.socket.sendto = _real_sendto
    socket.getaddrinfo = _real_getaddrinfo


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    install()
