"""End to end: mail received over SMTP and delivered by the real daemon, read back
with Python's mailbox module, a real LMTP server (dovecot) and an MDA script.

Run as root (CI), deliveries run as the users of the userbase (uid 65534 here),
so everything they write lives in a directory of its own under /tmp that they
can reach; run unprivileged, they run as the test's own user."""

from __future__ import annotations

import email
import mailbox
import os
import pathlib
import smtplib
import stat
import time

import pytest

from tests.dovecot import DOVECOT, dovecot_server
from tests.e2e.daemon import Daemon, has_mail, start, wait_for

USERS = (
    'table users { bob = "65534:65534:/nonexistent", carol = "65534:65534:/nonexistent",'
    ' alice = "65534:65534:/nonexistent" }'
)
MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@localhost\r\nSubject: hi\r\n\r\nHello.\r\nFrom here\r\n"
)


def maildir_config(shared: pathlib.Path) -> str:
    return f"""{USERS}
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""


def test_maildir_delivery_and_a_bounce_to_a_local_sender(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    d, port = start(
        tmp_path,
        maildir_config(shared),
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert (
                client.sendmail("alice@localhost", ["bob@localhost", "carol@localhost"], MESSAGE)
                == {}
            )
        wait_for(
            lambda: all(
                (shared / u / "new").is_dir() and any((shared / u / "new").iterdir())
                for u in ("bob", "carol")
            )
        )
        for user in ("bob", "carol"):
            [message] = list(mailbox.Maildir(str(shared / user), create=False))
            assert message["Return-Path"] == "<alice@localhost>"
            assert message["Delivered-To"] == f"{user}@localhost"
            assert message.get_payload() == "Hello.\nFrom here\n"  # LF on disk, no escaping
        wait_for(lambda: d.queued() == [])
        assert d.log().count("result=Ok stat=Delivered") == 2
    finally:
        d.stop()


def _stale(path: pathlib.Path, age: float = 3 * 86400) -> pathlib.Path:
    path.write_bytes(b"left by a killed delivery")
    when = time.time() - age
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def test_maildir_tmp_cleaned_of_stale_files_at_most_hourly(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    maildir = shared / "bob"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(maildir / sub, 65534, 65534)  # the delivering user's, as it makes them
    if os.geteuid() == 0:
        os.chown(maildir, 65534, 65534)
    tmp = maildir / "tmp"
    old = _stale(tmp / "1.M1P1Q1.orphan")
    fresh = _stale(tmp / "2.M2P2Q2.writing", age=60)
    outside = _stale(shared / "outside")
    link = tmp / "link"
    link.symlink_to(outside)
    os.utime(link, (time.time() - 86400 * 3,) * 2, follow_symlinks=False)
    d, port = start(
        tmp_path,
        maildir_config(shared),
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob@localhost"], MESSAGE)
        wait_for(lambda: d.log().count("result=Ok") == 1)
        assert not old.exists()
        assert fresh.exists() and link.is_symlink() and outside.exists()
        assert f"maildir: removed stale tmp file {old} (age 72h" in d.log()
        again = _stale(tmp / "3.M3P3Q3.orphan")  # within the hour: left for the next sweep
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob@localhost"], MESSAGE)
        wait_for(lambda: d.log().count("result=Ok") == 2)
        assert again.exists()
        assert d.log().count("removed stale tmp file") == 1
        assert len(list((maildir / "new").iterdir())) == 2
    finally:
        d.stop()


def test_mbox_delivery(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    d, port = start(
        tmp_path,
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "local" mbox userbase <users>
match from any for domain "localhost" action "local"
""",
        MTA_MBOX_DIR=str(shared),
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE)
            client.sendmail("", ["bob@localhost"], MESSAGE.replace(b"hi", b"second"))
        wait_for(lambda: (shared / "bob").exists() and d.log().count("result=Ok") == 2)
        box = mailbox.mbox(str(shared / "bob"))
        messages = list(box)
        box.close()
        assert [m["Subject"] for m in messages] == ["hi", "second"]
        assert messages[0].get_from().startswith("alice@example.org ")
        assert messages[1].get_from().startswith("MAILER-DAEMON ")
        assert messages[0].get_payload() == "Hello.\n>From here\n"
        if os.geteuid() == 0:
            assert (shared / "bob").stat().st_uid == 65534
        assert stat.S_IMODE((shared / "bob").stat().st_mode) == 0o600
    finally:
        d.stop()


def test_mda_delivery_exit_codes_and_a_permanent_failure_bounce(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    script = shared / "mda.sh"
    script.write_text(
        "#!/bin/sh\n"
        'case "$RECIPIENT" in\n'
        '  carol@*) cat >/dev/null; echo "mailbox disabled" >&2; exit 67;;\n'
        "esac\n"
        f'cat > "{shared}/$USER.$EXTENSION.out"\n'
    )
    script.chmod(0o755)
    d, port = start(
        tmp_path,
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "mda" mda "{script}" userbase <users>
action "box" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to "alice@localhost" action "box"
match from any for domain "localhost" action "mda"
""",
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob+tag@localhost", "carol@localhost"], MESSAGE)
        wait_for(lambda: (shared / "bob.tag.out").exists())
        assert b"Subject: hi" in (shared / "bob.tag.out").read_bytes()
        # carol's MDA said "user unknown" (67): permanent, so alice gets a failure notice
        wait_for(
            lambda: (
                (shared / "alice" / "new").is_dir() and any((shared / "alice" / "new").iterdir())
            )
        )
        [notice] = list(mailbox.Maildir(str(shared / "alice"), create=False))
        assert notice["Subject"] == "Delivery status notification: failed"
        assert notice.get_content_type() == "multipart/report"
        report = email.message_from_bytes(notice.as_bytes())
        status = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
        assert status and "carol@localhost" in status[0].as_string()
        assert "mailbox disabled" in notice.as_string()
        wait_for(lambda: d.queued() == [])
    finally:
        d.stop()


def test_dsn_notify_ret_envid_and_orcpt(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    users = USERS.replace(" }", ', dave = "65534:65534:/nonexistent" }')
    d, port = start(
        tmp_path,
        f"""{users}
listen on 127.0.0.1 port PORT
action "refuse" mda "cat >/dev/null; echo 'no such mailbox' >&2; exit 67" userbase <users>
action "box" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to {{ "carol@localhost", "dave@localhost" }} action "refuse"
match from any for domain "localhost" action "box"
""",
    )

    def notices() -> list[mailbox.MaildirMessage]:
        if not (shared / "alice" / "new").is_dir():
            return []
        return list(mailbox.Maildir(str(shared / "alice"), create=False))

    def parts(notice: mailbox.MaildirMessage) -> dict[str, email.message.Message]:
        report = email.message_from_bytes(notice.as_bytes())
        return {p.get_content_type(): p for p in report.walk()}

    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            # a success notice asked for, with the envelope id and only the headers back
            client.sendmail(
                "alice@localhost",
                ["bob@localhost"],
                MESSAGE,
                mail_options=["RET=HDRS", "ENVID=env+2D1"],
                rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@Example.Org"],
            )
            wait_for(lambda: len(notices()) == 1)
            (delivered,) = notices()
            assert delivered["Subject"] == "Delivery status notification: delivered"
            assert delivered["From"].startswith("Mailer Daemon <MAILER-DAEMON@")
            assert delivered["Return-Path"] is None  # sent from <>
            found = parts(delivered)
            status = found["message/delivery-status"].as_string()
            assert "Original-Envelope-Id: env-1" in status
            assert "Action: delivered" in status
            assert "Original-Recipient: rfc822;Bob@Example.Org" in status
            headers = found["text/rfc822-headers"].as_string()
            assert "Subject: hi" in headers and "Hello." not in headers  # RET=HDRS
            assert has_mail(shared / "bob")
            for name in list((shared / "alice" / "new").iterdir()):
                name.unlink()

            # NOTIFY=NEVER: no notice for carol; dave's default (FAILURE) gets one,
            # with the whole message (RET=FULL)
            client.sendmail(
                "alice@localhost",
                ["carol@localhost"],
                MESSAGE,
                mail_options=["RET=FULL"],
                rcpt_options=["NOTIFY=NEVER"],
            )
            client.sendmail(
                "alice@localhost", ["dave@localhost"], MESSAGE, mail_options=["RET=FULL"]
            )
        wait_for(lambda: d.queued() == [] and d.log().count("result=PermFail") == 2)
        wait_for(lambda: len(notices()) == 1)
        time.sleep(0.5)
        (failed,) = notices()
        assert failed["Subject"] == "Delivery status notification: failed"
        found = parts(failed)
        status = found["message/delivery-status"].as_string()
        assert "dave@localhost" in status and "carol@localhost" not in status
        assert "Action: failed" in status
        assert "Hello." in found["message/rfc822"].as_string()  # RET=FULL
    finally:
        d.stop()


def test_nothing_bounces_to_the_null_sender(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    d, port = start(
        tmp_path,
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "mda" mda "cat >/dev/null; exit 67" userbase <users>
match from any for domain "localhost" action "mda"
""",
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", ["bob@localhost"], MESSAGE)
        wait_for(lambda: "result=PermFail" in d.log())
        wait_for(lambda: d.queued() == [])
        assert "notice msgid" not in d.log()
    finally:
        d.stop()


def test_temporary_failures_stay_queued_with_their_error(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    d, port = start(
        tmp_path,
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "mda" mda "cat >/dev/null; echo busy >&2; exit 75" userbase <users>
match from any for domain "localhost" action "mda"
""",
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob@localhost"], MESSAGE)
        wait_for(lambda: "result=TempFail" in d.log())
        d.stop()
        [envelope] = [e for msgid in d.store().message_ids() for e in d.store().iter_envelopes()]
        assert envelope.retry == 1 and "busy" in envelope.errorline
        assert envelope.esc is not None and envelope.esc.class_ == 4
    finally:
        d.stop()


def slow_delivery(tmp_path: pathlib.Path, shared: pathlib.Path, script: str) -> Daemon:
    """A daemon whose MDA runs ``script`` (it must touch ``shared/started``
    first), with one message sent to it and its delivery under way."""
    mda = shared / "slow.sh"
    mda.write_text(f"#!/bin/sh\n{script}")
    mda.chmod(0o755)
    config = f"""{USERS}
listen on 127.0.0.1 port PORT
action "mda" mda "{mda}" userbase <users>
match from any for domain "localhost" action "mda"
"""
    d, port = start(tmp_path, config)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob@localhost"], MESSAGE)
        wait_for((shared / "started").exists)
    except BaseException:
        d.stop()
        raise
    return d


def test_sigkill_during_a_delivery_then_a_restart_delivers(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    marker = shared / "started"
    d = slow_delivery(
        tmp_path,
        shared,
        f'if [ ! -e "{marker}" ]; then touch "{marker}"; sleep 30; fi\n'
        f'cat >> "{shared}/delivered"\n',
    )
    try:
        d.kill()  # in the middle of the delivery
        assert len(d.queued()) == 1
        d.start()
        wait_for(lambda: (shared / "delivered").exists() and d.queued() == [])
        assert (shared / "delivered").read_bytes().count(b"Subject: hi") == 1
    finally:
        d.stop()


def test_sigterm_lets_a_delivery_in_flight_finish(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    d = slow_delivery(
        tmp_path, shared, f'touch "{shared}/started"; sleep 1\ncat >> "{shared}/delivered"\n'
    )
    try:
        assert d.stop() == 0  # SIGTERM in the middle of the delivery
        assert (shared / "delivered").read_bytes().count(b"Subject: hi") == 1
        assert d.queued() == []  # recorded as delivered: no repeat after a restart
        log = d.log()
        assert log.index("result=Ok") < log.index("mta: exiting")
    finally:
        d.stop()


@pytest.mark.skipif(not os.path.exists(DOVECOT), reason="dovecot-lmtpd is not installed")
def test_lmtp_delivery_to_dovecot(tmp_path: pathlib.Path) -> None:
    with dovecot_server(["bob", "carol"]) as dovecot:
        d, port = start(
            tmp_path,
            f"""{USERS}
listen on 127.0.0.1 port PORT
action "tcp" lmtp "127.0.0.1:{dovecot.port}" userbase <users>
action "unix" lmtp "{dovecot.socket}" rcpt-to userbase <users>
match from any for rcpt-to "carol@localhost" action "unix"
match from any for domain "localhost" action "tcp"
""",
        )
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("alice@example.org", ["bob@localhost", "carol@localhost"], MESSAGE)
            wait_for(lambda: d.queued() == [] and d.log().count("result=Ok") == 2)
            for user in ("bob", "carol"):  # over TCP to the user name; over Unix, rcpt-to
                [message] = list(dovecot.maildir(user))
                assert message["Subject"] == "hi"
                assert f"{user}@localhost" in message.get_all("Delivered-To", [])
        finally:
            d.stop()


def test_an_unwritable_maildir_or_a_killed_mda_is_retried_not_bounced(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    locked = shared / "locked"
    locked.mkdir()
    # bob's maildir exists (so root makes nothing for him) and nobody, or the
    # unprivileged test user, cannot write in it
    (locked / "bob").mkdir(mode=0o555)
    (locked / "bob").chmod(0o555)
    d, port = start(
        tmp_path,
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "box" maildir "{locked}/%{{user.username}}" userbase <users>
action "killed" mda "cat >/dev/null; kill -9 $$" userbase <users>
action "back" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to "alice@localhost" action "back"
match from any for rcpt-to "carol@localhost" action "killed"
match from any for domain "localhost" action "box"
""",
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob@localhost", "carol@localhost"], MESSAGE)
        wait_for(lambda: d.log().count("result=TempFail") >= 2)
        d.stop()
        envelopes = list(d.store().iter_envelopes())
        assert sorted(str(e.dest) for e in envelopes) == ["bob@localhost", "carol@localhost"]
        assert all(e.retry >= 1 and e.esc is not None and e.esc.class_ == 4 for e in envelopes)
        assert "Permission denied" in next(e for e in envelopes if e.dest.local == "bob").errorline
        assert "signal 9" in next(e for e in envelopes if e.dest.local == "carol").errorline
        assert not has_mail(shared / "alice")  # retried, never bounced
    finally:
        d.stop()


def test_a_delay_notice_then_expiry_with_a_failure_notice(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    d, port = start(
        tmp_path,
        f"""{USERS}
bounce warn-interval 1s
listen on 127.0.0.1 port PORT
action "busy" mda "cat >/dev/null; echo 'try later' >&2; exit 75" userbase <users> ttl 4s
action "back" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to "alice@localhost" action "back"
match from any for domain "localhost" action "busy"
""",
    )
    try:
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@localhost", ["bob@localhost"], MESSAGE)
        new = shared / "alice" / "new"
        wait_for(lambda: new.is_dir() and len(list(new.iterdir())) == 2)
        # the second notice waited for the expiry (ctime is whole seconds: up to 1 s early)
        assert time.monotonic() - started >= 2.9
        subjects = sorted(m["Subject"] for m in mailbox.Maildir(str(shared / "alice")))
        assert subjects == [
            "Delivery status notification: delayed",
            "Delivery status notification: failed",
        ]
        failed = next(m for m in mailbox.Maildir(str(shared / "alice")) if "failed" in m["Subject"])
        assert "Envelope expired" in failed.as_string() and "5.4.7" in failed.as_string()
        wait_for(lambda: d.queued() == [])
        assert "delivery: Expire for" in d.log()
    finally:
        d.stop()
