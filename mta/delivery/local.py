"""Local delivery of one envelope, as its action says (OpenSMTPD's ``mda.c``).

The envelope names its action (``dispatcher``) and, after expansion at RCPT
time, what to deliver to: the local user (``mda_user``, with the action's
method), a file (alias ``/path``: appended in mbox format) or a command
(alias ``|command``).  The user is looked up again (the action's ``user`` with
``getpwnam``, else its ``userbase``); the message is read from the spool with
``Return-Path`` (when there is a sender) and ``Delivered-To`` lines put first,
and a message that already carries ``Delivered-To: <dest>`` is a loop.
The method gets the message as ``prefix`` (those lines and the first part of
the message, read for the loop check) and the rest of the stream.

- ``maildir [path] [junk]``: the path (default ``~/Maildir``; a relative one is
  relative to the directory the daemon started in) with its format specifiers
  expanded and no ``..``; symbolic links are not followed below the part of
  the path written without specifiers.  At most once an hour per maildir (and
  only in a worker thread), the delivery also removes the files of ``tmp/``
  untouched for 36 hours (:mod:`mta.delivery.tmpsweep`), and each is logged.
- ``mbox``: the system mailbox ``/var/mail/USER`` when the daemon runs as root;
  run unprivileged, ``MTA_MBOX_DIR`` or ``<spool>/mail/USER``.
- ``mda "command"``: expanded, through an ``mda wrapper`` if the action names
  one, run by :func:`~mta.delivery.mda.run_mda`.
- ``lmtp "destination" [rcpt-to]``: :func:`~mta.delivery.lmtp.deliver_lmtp`
  to the user name, or to the final address with ``rcpt-to``.

Run as root, deliveries never run as root: commands run as the user; maildir
and mbox deliveries in a worker thread with the user's file-system identity
(:mod:`mta.delivery.fsidentity`, Linux), else in a child process of the user
(:mod:`mta.delivery.asuser`; so does a system mailbox whose spool's group the
user needs for the dot lock; the system mailbox is created for the user first,
as OpenSMTPD's parent does); a delivery to uid 0 is refused.  Files and commands
from alias tables belong to no user: they run as ``nobody`` (OpenSMTPD's
``_smtpd``), or as the daemon's user when it is unprivileged.  Run unprivileged,
everything runs as the daemon's user, maildir and mbox in worker threads.

A message whose content fails its checks (:class:`~mta.errors.CorruptMessage`,
when it is opened, or should it change while it streams) is no delivery
result: the error goes to the queue runner, which quarantines the message
without a bounce.  A method cut off by it completes nothing (maildir: no link
into ``new/``; mbox: truncated back; LMTP: no final dot; MDA: killed).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import AsyncIterator
from typing import BinaryIO, Protocol

import attrs

from mta import threads
from mta.config.model import Config, LocalDelivery
from mta.delivery import fsidentity
from mta.delivery.asuser import run_as_user
from mta.delivery.format import FormatError, FormatValues, expand, expand_path
from mta.delivery.lmtp import deliver_lmtp
from mta.delivery.maildir import deliver_maildir, delivery_headers, folder_name
from mta.delivery.mbox import deliver_mbox, mailbox_path, spool_groups
from mta.delivery.mda import MdaCommand, run_mda
from mta.delivery.prepare import create_mailbox, prepare_maildir_base, user_base
from mta.delivery.result import ESC_ROUTING_LOOP_DETECTED, Result
from mta.delivery.tmpsweep import SweepSchedule, log_sweep
from mta.envelope import DeliveryNode, Envelope
from mta.errors import (
    CorruptMessage,
    MTAError,
    PermanentFailure,
    SpoolError,
    SpoolNotFound,
    TemporaryFailure,
)
from mta.log import get_logger, visible
from mta.rules.tableset import TableSet
from mta.spool.store import read_chunks, stream_chunks
from mta.status import StatusCode
from mta.tables.lookups import lookup_userinfo
from mta.tables.values import UserInfo

__all__ = ["LocalDeliverer", "MessageSource"]

log = get_logger("mda")

_LOOP_SCAN = 256 * 1024  # header bytes looked at for a Delivered-To loop


class MessageSource(Protocol):
    """Opens the content of a queued message (:class:`~mta.spool.spool.Spool` does):
    in a trip to a worker thread, or (``open_head``) in the worker thread that
    calls it.  Both raise SpoolNotFound, CorruptMessage or SpoolError."""

    async def open_message_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]: ...

    def open_head(self, msgid: int, size: int) -> tuple[BinaryIO, bytes]: ...


async def _async_chunks(prefix: bytes, stream: BinaryIO) -> AsyncIterator[bytes]:
    yield prefix
    async for chunk in read_chunks(stream):
        yield chunk


_LOOP = Result.permfail("Loop detected", ESC_ROUTING_LOOP_DETECTED)


def _not_opened(exc: SpoolNotFound | SpoolError) -> Result:
    """The result of a delivery whose message could not be opened."""
    if isinstance(exc, SpoolNotFound):
        return Result.permfail("Error (message no longer in the queue)")
    return Result.tempfail(f"Error ({exc})")


def _has_loop(head: bytes, dest: str) -> bool:
    """``Delivered-To: <dest>`` among the headers (OpenSMTPD ``mda_check_loop``)."""
    wanted = dest.lower()
    for raw in head.split(b"\n"):
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        if not line or (":" not in line and not line[:1].isspace()):
            break
        if line[:14].lower() == "delivered-to: " and line[14:].lower() == wanted:
            return True
    return False


@attrs.frozen(eq=False)
class _Job:
    """One delivery under way: the envelope, its action, its user and its message:
    the delivery ``headers`` (LF lines), the ``head`` already read (for the loop
    check), then the rest of ``stream``."""

    envelope: Envelope
    method: LocalDelivery
    user: UserInfo
    stream: BinaryIO
    headers: bytes
    head: bytes

    @property
    def prefix(self) -> bytes:
        return self.headers + self.head


@attrs.frozen
class _Place:
    """Where a maildir delivery goes: the maildir, the directory below which no
    symbolic link is followed, the sub-address folder, and the directory root
    makes first (None: none)."""

    path: str
    confine: str | None
    folder: str | None
    base: str | None


class LocalDeliverer:
    """Delivers envelopes of local actions (a :data:`~mta.scheduler.runner.Deliver`)."""

    def __init__(
        self,
        config: Config,
        tables: TableSet,
        messages: MessageSource,
        *,
        spool_dir: str,
        privileged: bool | None = None,
        mbox_dir: str | None = None,
        hostname: str | None = None,
    ) -> None:
        self.config = config
        self.tables = tables
        self.messages = messages
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        if mbox_dir is None:
            mbox_dir = os.environ.get("MTA_MBOX_DIR") or (
                "/var/mail" if self.privileged else os.path.join(spool_dir, "mail")
            )
        self.mbox_dir = mbox_dir
        self._fixed_hostname = hostname
        self.hostname = hostname or config.hostname
        self.base = os.getcwd()  # relative maildir paths are relative to where we started
        self.tmp_sweeps = SweepSchedule()  # when each maildir's tmp/ was last cleaned

    def reconfigure(self, config: Config, tables: TableSet) -> None:
        """Deliver by ``config`` from the next attempt on (a reload): an
        envelope's action is looked up by name at each attempt."""
        self.config = config
        self.tables = tables
        self.hostname = self._fixed_hostname or config.hostname

    async def __call__(self, envelope: Envelope) -> Result:
        """The result of one attempt; raises :class:`~mta.errors.CorruptMessage`
        when the message fails its checks (the runner quarantines it)."""
        try:
            result = await self._deliver(envelope)
        except CorruptMessage:
            raise
        except (FormatError, PermanentFailure) as exc:
            result = Result.permfail(f"Error ({visible(str(exc), 300)})")
        except (TemporaryFailure, MTAError, OSError) as exc:
            result = Result.tempfail(f"Error ({visible(str(exc), 300)})")
        return result

    async def _deliver(self, envelope: Envelope) -> Result:
        action = self.config.actions.get(envelope.dispatcher)
        if action is None or not isinstance(action.method, LocalDelivery):
            # the configuration changed under the queue: keep the mail for the admin
            return Result.tempfail(f"Error (no local action {envelope.dispatcher!r})")
        method = action.method
        user = await self._user(method, envelope)
        if user is None:
            return Result.permfail("Error (user unknown)", StatusCode(5, 1, 1))
        if self.privileged and user.uid == 0:
            return Result.permfail(f"Error (MDA not allowed to deliver to: {user.username})")
        if (
            method.method == "maildir"
            and envelope.node not in (DeliveryNode.FILENAME, DeliveryNode.COMMAND)
            and (not self.privileged or fsidentity.available())
        ):
            return await self._maildir_in_one_trip(envelope, method, user)
        try:
            stream, head = await self.messages.open_message_head(envelope.msgid, _LOOP_SCAN)
        except CorruptMessage:
            raise  # for the runner: quarantined, no delivery result
        except (SpoolNotFound, SpoolError) as exc:
            return _not_opened(exc)
        try:
            if _has_loop(head, str(envelope.dest)):
                return _LOOP
            headers = delivery_headers(str(envelope.sender), str(envelope.rcpt))
            return await self._by_node(_Job(envelope, method, user, stream, headers, head))
        finally:
            stream.close()

    async def _user(self, method: LocalDelivery, envelope: Envelope) -> UserInfo | None:
        if envelope.node is not DeliveryNode.USER and not envelope.mda_user:
            # a file or command from an alias table: no user of its own; OpenSMTPD
            # runs these as its unprivileged user
            return _unprivileged_user(self.privileged)
        if method.user is not None:
            table = self.tables.builtin("<getpwnam>")
            name = method.user
        else:
            table = (
                self.tables.get(method.userbase)
                if method.userbase is not None
                else self.tables.builtin("<getpwnam>")
            )
            name = envelope.mda_user or envelope.dest.local
        return await self.tables.call(table, lambda: lookup_userinfo(table, name))

    def _values(self, envelope: Envelope, user: UserInfo, mda: str | None = None) -> FormatValues:
        return FormatValues(
            sender=envelope.sender,
            rcpt=envelope.rcpt,
            dest=envelope.dest,
            username=user.username,
            directory=user.directory,
            mda=mda,
            delimiter=self.config.smtp.sub_addr_delim or "+",
        )

    async def _by_node(self, job: _Job) -> Result:
        envelope, method, user = job.envelope, job.method, job.user
        if envelope.node is DeliveryNode.FILENAME:
            return await self._file(job, envelope.mda_exec, False)
        if envelope.node is DeliveryNode.COMMAND:
            return await self._command(job, envelope.mda_exec)
        if method.method == "maildir":
            return await self._maildir(job)
        if method.method == "mbox":
            return await self._file(job, mailbox_path(user.username, self.mbox_dir), True)
        if method.method == "mda":
            assert method.path is not None
            return await self._command(job, method.path)
        if method.method == "lmtp":
            assert method.path is not None
            rcpt = str(envelope.dest) if method.rcpt_to else user.username
            return await deliver_lmtp(
                method.path,
                lhlo=self.hostname,
                sender=str(envelope.sender),
                rcpt=rcpt,
                # LMTP speaks CRLF: the spool's content has it, the headers get it
                chunks=_async_chunks(job.headers.replace(b"\n", b"\r\n") + job.head, job.stream),
            )
        return Result.permfail(f"Error (no delivery for a {method.method} action)")

    def _maildir_place(self, envelope: Envelope, method: LocalDelivery, user: UserInfo) -> _Place:
        """Where a maildir delivery goes (FormatError when the path cannot be made)."""
        template = method.path or "~/Maildir"
        if not template.startswith(("/", "~/", "%{")):
            template = os.path.join(self.base, template)
        values = self._values(envelope, user)
        path = expand_path(template, values)
        confine = _confine(template, values)
        folder = envelope.mda_subaddress or None
        if folder is not None and folder_name(folder) is None:
            folder = None
        # root makes what the user could not
        base = user_base(template, confine) if self.privileged else None
        return _Place(path, confine, folder, base)

    async def _maildir_in_one_trip(
        self, envelope: Envelope, method: LocalDelivery, user: UserInfo
    ) -> Result:
        """A maildir delivery done in a worker thread (with the user's file-system
        identity when root), the message opened and checked for a loop in the
        same trip: one hand-over to a thread and back instead of two or three."""
        place = self._maildir_place(envelope, method, user)
        sweep = self.tmp_sweeps.start(f"{place.path}\0{place.folder or ''}")
        headers = delivery_headers(str(envelope.sender), str(envelope.rcpt))
        messages, privileged, hostname = self.messages, self.privileged, self.hostname

        def work() -> Result:
            try:
                stream, head = messages.open_head(envelope.msgid, _LOOP_SCAN)
            except CorruptMessage:
                raise
            except (SpoolNotFound, SpoolError) as exc:
                return _not_opened(exc)
            try:
                if _has_loop(head, str(envelope.dest)):
                    return _LOOP

                def write() -> None:
                    deliver_maildir(
                        place.path,
                        stream_chunks(stream),
                        prepend=headers + head,
                        junk=method.junk,
                        folder=place.folder,
                        confine=place.confine,
                        hostname=hostname,
                        sweep=sweep,
                    )

                if not privileged:
                    write()
                    return Result.ok()
                if place.base is not None:
                    prepare_maildir_base(place.base, place.path, user.uid, user.gid)
                return fsidentity.deliver_as_user(user, write)
            finally:
                stream.close()

        try:
            return await threads.run_sync(work)
        finally:
            if sweep is not None:
                log_sweep(sweep)

    async def _maildir(self, job: _Job) -> Result:
        """A maildir delivery in a child process of the user (root without
        per-thread file-system identities)."""
        place = self._maildir_place(job.envelope, job.method, job.user)
        user = job.user

        def work() -> None:
            deliver_maildir(
                place.path,
                stream_chunks(job.stream),
                prepend=job.prefix,
                junk=job.method.junk,
                folder=place.folder,
                confine=place.confine,
                hostname=self.hostname,
            )

        if place.base is not None:
            await threads.run_sync(prepare_maildir_base, place.base, place.path, user.uid, user.gid)
        return await run_as_user(user, work)

    async def _file(self, job: _Job, path: str, system_mailbox: bool) -> Result:
        """Append in mbox format: the system mailbox (dotlocked) or an alias file."""
        sender, user = str(job.envelope.sender), job.user

        def work() -> None:
            deliver_mbox(
                path,
                stream_chunks(job.stream),
                sender=sender,
                prepend=job.prefix,
                dotlock=system_mailbox,
            )

        if self.privileged:
            groups: tuple[int, ...] = ()
            if system_mailbox:
                await threads.run_sync(create_mailbox, path, user.uid, user.gid)
                groups = await threads.run_sync(spool_groups, path)  # to take path.lock
            if not groups and fsidentity.available():
                return await fsidentity.run_with_fs_identity(user, work)
            return await run_as_user(user, work, groups=groups)
        if system_mailbox:
            await threads.run_sync(lambda: os.makedirs(os.path.dirname(path), exist_ok=True))
        await threads.run_sync(work)
        return Result.ok()

    async def _command(self, job: _Job, template: str) -> Result:
        envelope, method, user = job.envelope, job.method, job.user
        command = expand(template, self._values(envelope, user))
        if method.wrapper is not None:
            wrapper = self.config.mda_wrappers.get(method.wrapper)
            if wrapper is None:
                return Result.tempfail(f"Error (could not find wrapper {method.wrapper})")
            command = expand(wrapper, self._values(envelope, user, mda=command))
        return await run_mda(
            self._mda(envelope, user, command), _async_chunks(job.prefix, job.stream)
        )

    def _mda(self, envelope: Envelope, user: UserInfo, command: str) -> MdaCommand:
        return MdaCommand(
            command=command,
            username=user.username,
            home=user.directory,
            sender=str(envelope.sender),
            original_recipient=str(envelope.rcpt),
            recipient=str(envelope.dest),
            local=envelope.rcpt.local,
            domain=envelope.rcpt.domain,
            extension=envelope.mda_subaddress,
            uid=user.uid if self.privileged else None,
            gid=user.gid if self.privileged else None,
        )


def _unprivileged_user(privileged: bool) -> UserInfo | None:
    """``nobody`` when the daemon runs as root, else the daemon's own user."""
    try:
        entry = pwd.getpwnam("nobody") if privileged else pwd.getpwuid(os.getuid())
    except KeyError:
        return None
    return UserInfo(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _confine(template: str, values: FormatValues) -> str | None:
    """The directory written in ``template`` before its first format specifier: no
    symbolic link below it is followed (None when nothing in the path varies)."""
    cut = template.find("%{")
    if cut < 0:
        return None
    static = template[:cut]
    if static.startswith("~/"):
        static = values.directory.rstrip("/") + "/" + static[2:]
    directory = static[: static.rfind("/") + 1].rstrip("/") or "/"
    return directory if directory.startswith("/") else None
