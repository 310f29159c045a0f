"""The hosts file (``/etc/hosts``): names the system gives addresses before it
asks DNS, read as glibc's ``files`` service reads it (``hosts: files dns`` in
``/etc/nsswitch.conf``).

:func:`parse_hosts` is sans-IO: text in, a :class:`Hosts` out.  Each line is
an address followed by names; ``#`` starts a comment anywhere; a line without
a name, or whose address is not an IPv4 or IPv6 address (a zone index such as
``fe80::1%eth0`` included, as glibc's ``inet_pton`` refuses it), is ignored.

- address -> name (:meth:`Hosts.name_of`): the first name of the first line
  with that address, as ``gethostbyaddr`` gives it (``127.0.0.1 localhost``
  then ``127.0.0.1 vm``: ``localhost``);
- name -> addresses (:meth:`Hosts.addresses_of`): every line naming it (any of
  its names, case-insensitively), in file order, as ``getaddrinfo`` collects
  them.

An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``), in the file or asked
about, stands for its IPv4 address, as a client of a dual-stack socket does.

:class:`HostsFile` is the file on disk: it is stat'ed at each use and reread
(in a worker thread) only when it changed, so an edit takes effect at the next
connection without a restart.  ``MTA_HOSTS`` names another file for tests and
labs, ``MTA_HOSTS=none`` (or empty) switches the hosts file off; unset, it is
``/etc/hosts``.  A missing file is an empty one.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping

import attrs
import trio

from mta.log import get_logger, visible

__all__ = [
    "ENV_VAR",
    "HOSTS_FILE",
    "Hosts",
    "HostsFile",
    "hosts_path",
    "normal_address",
    "parse_hosts",
]

ENV_VAR = "MTA_HOSTS"
HOSTS_FILE = "/etc/hosts"

log = get_logger("dns")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=4096)  # (parsing takes microseconds; a session asks twice)
def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _version(text: str) -> int:
    return ipaddress.ip_address(text).version


def normal_address(text: str) -> Address | None:
    """``text`` as an address (brackets allowed), an IPv4-mapped IPv6 address
    as its IPv4 address; None when it is not an address or has a zone index."""
    return _address(text.strip("[]"))


def _name_key(name: str) -> str:
    return name.rstrip(".").lower()


@attrs.frozen
class Hosts:
    """The parsed hosts file: ``names`` by address (its text, see
    :func:`normal_address`), ``addresses`` by lower-case name."""

    names: Mapping[str, str] = attrs.field(factory=dict)
    addresses: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)

    def name_of(self, address: str | Address) -> str | None:
        """The canonical name of ``address``, None when no line has it."""
        found = normal_address(address) if isinstance(address, str) else _address(str(address))
        return None if found is None else self.names.get(str(found))

    def addresses_of(self, name: str, version: int | None = None) -> tuple[str, ...]:
        """The addresses of ``name`` (IPv4 only for ``version`` 4, IPv6 only
        for 6), empty when no line names it."""
        found = self.addresses.get(_name_key(name), ())
        if version is None:
            return found
        return tuple(a for a in found if _version(a) == version)


def parse_hosts(text: str) -> Hosts:
    """Parse the text of a hosts file (see the module docstring)."""
    names: dict[str, str] = {}
    addresses: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2:
            continue
        address = _address(fields[0])
        if address is None:
            continue
        key = str(address)
        names.setdefault(key, fields[1])
        for name in fields[1:]:
            found = addresses.setdefault(_name_key(name), [])
            if key not in found:
                found.append(key)
    return Hosts(names, {name: tuple(found) for name, found in addresses.items()})


def hosts_path(environ: Mapping[str, str] | None = None) -> str | None:
    """The hosts file to read: ``MTA_HOSTS`` when set (empty or ``none``: no
    hosts file), else ``/etc/hosts``."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR)
    if value is None:
        return HOSTS_FILE
    if value.strip().lower() in ("", "none"):
        return None
    return value


_Signature = tuple[int, int, int, int, int]  # device, inode, size, mtime, ctime
_MISSING: _Signature = (-1, -1, -1, -1, -1)


class HostsFile:
    """A hosts file on disk, reread when it changes (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._hosts = Hosts()
        self._signature: _Signature | None = None
        self._error: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostsFile | None:
        """The file of :func:`hosts_path`, or None when it is switched off."""
        path = hosts_path(environ)
        return cls(path) if path is not None else None

    def _stat(self) -> _Signature:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return _MISSING
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> Hosts:
        try:
            with open(self.path, "rb") as stream:
                data = stream.read()
        except FileNotFoundError:  # removed since the stat
            return Hosts()
        return parse_hosts(data.decode("utf-8", "replace"))

    def _loaded(self, signature: _Signature, hosts: Hosts) -> Hosts:
        self._hosts, self._signature, self._error = hosts, signature, None
        return hosts

    def _failed(self, exc: OSError, signature: _Signature | None) -> Hosts:
        """Nothing from the file until it changes; the warning once, not at
        every connection."""
        reason = exc.strerror or type(exc).__name__
        if reason != self._error:
            log.warning("dns: cannot read %s: %s", visible(self.path), reason)
        self._hosts, self._signature, self._error = Hosts(), signature, reason
        return self._hosts

    def load(self) -> Hosts:
        """The file's current contents (blocking; rereads only when it changed)."""
        signature = None
        try:
            signature = self._stat()
            if signature == self._signature:
                return self._hosts
            hosts = Hosts() if signature == _MISSING else self._read()
        except OSError as exc:
            return self._failed(exc, signature)
        return self._loaded(signature, hosts)

    async def current(self) -> Hosts:
        """:meth:`load` for trio: the stat is done in place, a reread in a thread."""
        signature = None
        try:
            signature = self._stat()
            if signature == self._signature:
                return self._hosts
            if signature == _MISSING:
                hosts = Hosts()
            else:
                hosts = await trio.to_thread.run_sync(self._read)
        except OSError as exc:
            return self._failed(exc, signature)
        return self._loaded(signature, hosts)
