"""End to end: the options of local delivery actions, through real SMTP sessions to
the real daemon: ``maildir ... junk``, format specifiers in a maildir path,
``mda`` exit 71 and ``mda wrapper``, ``forward-only`` / ``expand-only``,
``alias`` tables with every kind of value, ``virtual``, ``userbase``, ``user``,
``.forward`` files, ``sub-addr-delim``, ``lmtp ... rcpt-to``, the delivery log
line, a full maildir filesystem, and ``mbox`` into ``/var/mail`` as root.

Run as root (CI), deliveries run as the users of the userbase (uid 65534, the
``shared`` fixture's directory is theirs to write in); run unprivileged, they
run as the test's own user and the root-only tests skip."""

from __future__ import annotations

import email
import mailbox
import os
import pathlib
import re
import secrets
import smtplib
import subprocess
import sys

import pytest

from mta.envelope import EnvelopeKind
from tests.dovecot import DOVECOT, dovecot_server
from tests.e2e.daemon import Daemon, free_port, has_mail, start, wait_for

ROOT = os.geteuid() == 0
NOBODY = 65534
USERS = ("alice", "bob", "carol", "dave", "erin")
MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]


def users_table(shared: pathlib.Path) -> str:
    """The userbase: every user is uid 65534 with a home under ``shared/home``
    (created, owned by the user, mode 0755, as a ``.forward`` needs)."""
    for user in USERS:
        home = shared / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o755)
        if ROOT:
            os.chown(home, NOBODY, NOBODY)
    (shared / "home").chmod(0o755)
    entries = ", ".join(f'{u} = "{NOBODY}:{NOBODY}:{shared}/home/{u}"' for u in USERS)
    return f"table users {{ {entries} }}"


def message(subject: str, headers: str = "") -> bytes:
    return (
        f"From: alice@localhost\r\nTo: bob@localhost\r\nSubject: {subject}\r\n{headers}"
        "\r\nHello.\r\n"
    ).encode()


def send(
    port: int, rcpts: list[str], content: bytes, sender: str = "alice@localhost"
) -> dict[str, tuple[int, str]]:
    """One transaction: the reply to each RCPT (the message is sent when one is accepted)."""
    replies: dict[str, tuple[int, str]] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.docmd("MAIL", f"FROM:<{sender}>")[0] == 250
        for rcpt in rcpts:
            code, text = client.docmd("RCPT", f"TO:<{rcpt}>")
            replies[rcpt] = (code, text.decode())
        if any(code == 250 for code, _ in replies.values()):
            code, text = client.data(content)
            assert code == 250, text
    return replies


def subjects(maildir: pathlib.Path) -> list[str]:
    """The subjects of the messages in a maildir's ``new/`` (none when it does not exist)."""
    new = maildir / "new"
    if not new.is_dir():
        return []
    found = []
    for path in new.iterdir():
        parsed = email.message_from_bytes(path.read_bytes())
        found.append(str(parsed["Subject"]))
    return sorted(found)


def maildirs(root: pathlib.Path) -> list[str]:
    """Every maildir (a directory with ``new/``) under ``root``, relative to it."""
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("new") if p.is_dir())


def delivered(d: Daemon, count: int) -> bool:
    return d.log().count("result=Ok") >= count and d.queued() == []


def write_forward(shared: pathlib.Path, user: str, text: str) -> None:
    forward = shared / "home" / user / ".forward"
    forward.write_text(text)
    forward.chmod(0o644)
    if ROOT:
        os.chown(forward, NOBODY, NOBODY)


# -- maildir junk ----------------------------------------------------------------------


def test_maildir_junk_sends_spam_to_the_junk_folder(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
listen on 127.0.0.1 port PORT
action "junk" maildir "{shared}/%{{user.username}}" junk userbase <users>
action "plain" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to "carol@localhost" action "plain"
match from any for domain "localhost" action "junk"
""",
    )
    try:
        assert not (shared / "bob" / ".Junk").exists()
        send(port, ["bob@localhost", "carol@localhost"], message("spam", "X-Spam: yes\r\n"))
        send(port, ["bob@localhost", "carol@localhost"], message("ham", "X-Spam: no\r\n"))
        wait_for(lambda: delivered(d, 4))
        # bob's action has junk: the spam went to .Junk (created), the rest to new/
        assert subjects(shared / "bob" / ".Junk") == ["spam"]
        assert subjects(shared / "bob") == ["ham"]
        junk = mailbox.Maildir(str(shared / "bob"), create=False).get_folder("Junk")
        [spam] = list(junk)
        assert spam["X-Spam"] == "yes" and spam["Delivered-To"] == "bob@localhost"
        # carol's has not: both in new/, and no .Junk folder
        assert subjects(shared / "carol") == ["ham", "spam"]
        assert not (shared / "carol" / ".Junk").exists()
        assert maildirs(shared) == ["bob", "bob/.Junk", "carol"]
    finally:
        d.stop()


# -- format specifiers in a maildir path -------------------------------------------------


def test_maildir_path_format_specifiers(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
listen on 127.0.0.1 port PORT
action "spec" maildir "{shared}/boxes/%{{rcpt.domain[0:6]}}/%{{rcpt.user:lowercase|strip}}/\
%{{user.username[0]}}%{{user.username[-2:]}}" userbase <users>
action "home" maildir "~/Mail/%{{rcpt.domain:uppercase}}" userbase <users>
match from any for domain "example.test" action "spec"
match from any for domain "localhost" action "home"
""",
    )
    try:
        replies = send(port, ["Bob+News@Example.Test", "Carol@localhost"], message("spec"))
        assert all(code == 250 for code, _ in replies.values()), replies
        wait_for(lambda: delivered(d, 2))
        # domain example.test, [0:6] "example"; user Bob+News lowercased and stripped
        # "bob"; username "bob": [0] "b", [-2:] "ob"
        assert maildirs(shared / "boxes") == ["example/bob/bob"]
        assert subjects(shared / "boxes" / "example" / "bob" / "bob") == ["spec"]
        # ~/ is the home directory of the userbase
        assert maildirs(shared / "home") == ["carol/Mail/LOCALHOST"]
        assert subjects(shared / "home" / "carol" / "Mail" / "LOCALHOST") == ["spec"]
    finally:
        d.stop()


def test_an_address_cannot_escape_the_maildir_directory(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    """``%{rcpt.user}`` of ``"../../../escape"``: the quotes become ``:`` but the
    ``..`` components stay, and the path is refused (a bounce), never followed;
    ``/`` in a local part is kept and makes a subdirectory, inside."""
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
table virt {{ "@localhost" = "bob" }}
listen on 127.0.0.1 port PORT
action "back" maildir "{shared}/%{{user.username}}" userbase <users>
action "boxes" maildir "{shared}/boxes/%{{rcpt.user}}" virtual <virt> userbase <users>
match from any for rcpt-to "alice@localhost" action "back"
match from any for domain "localhost" action "boxes"
""",
    )
    try:
        escape = '"../../../escape"@localhost'
        replies = send(port, [escape, "x/y@localhost"], message("escape"))
        assert replies[escape][0] == 250 and replies["x/y@localhost"][0] == 250
        wait_for(lambda: has_mail(shared / "alice") and d.queued() == [])
        assert maildirs(shared / "boxes") == ["x/y"]
        assert subjects(shared / "boxes" / "x" / "y") == ["escape"]
        assert sorted(p.name for p in (shared / "boxes").iterdir()) == ["x"]
        assert maildirs(shared) == ["alice", "boxes/x/y"]
        # the sender learns why
        [notice] = list(mailbox.Maildir(str(shared / "alice"), create=False))
        assert notice["Subject"] == "Delivery status notification: failed"
        assert "../../../escape" in notice.as_string()
        assert d.log().count("result=PermFail") == 1
    finally:
        d.stop()


# -- mda: exit 71 and wrappers ----------------------------------------------------------


def test_mda_exit_71_is_a_temporary_failure(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
listen on 127.0.0.1 port PORT
action "oserr" mda "cat >/dev/null; echo 'cannot fork' >&2; exit 71" userbase <users>
action "back" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to "alice@localhost" action "back"
match from any for domain "localhost" action "oserr"
""",
    )
    try:
        send(port, ["bob@localhost"], message("oserr"))
        wait_for(lambda: "result=TempFail" in d.log())
        d.stop()
        [envelope] = list(d.store().iter_envelopes())
        assert str(envelope.dest) == "bob@localhost"
        assert envelope.retry == 1 and str(envelope.esc) == "4.3.0"
        assert "cannot fork" in envelope.errorline
        assert not has_mail(shared / "alice")  # kept, not bounced
    finally:
        d.stop()


def test_mda_wrapper_runs_around_the_command(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    wrap = shared / "wrap.sh"
    log = shared / "wrap.log"
    wrap.write_text(
        "#!/bin/sh\n"
        f'echo "begin $USER $1: $2" >> "{log}"\n'
        '/bin/sh -c "$2"\n'
        "status=$?\n"
        f'echo "end $status" >> "{log}"\n'
        "exit $status\n"
    )
    wrap.chmod(0o755)
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
mda wrapper "wrap" "{wrap} %{{rcpt.user}} '%{{mda}}'"
listen on 127.0.0.1 port PORT
action "wrapped" mda "cat > {shared}/%{{user.username}}.out" wrapper "wrap" userbase <users>
action "bare" mda "cat > {shared}/%{{user.username}}.out" userbase <users>
match from any for rcpt-to "carol@localhost" action "bare"
match from any for domain "localhost" action "wrapped"
""",
    )
    try:
        send(port, ["bob@localhost", "carol@localhost"], message("wrapped"))
        wait_for(lambda: delivered(d, 2))
        # the wrapper ran once, for bob, as bob, with the command expanded in %{mda}
        assert log.read_text() == f"begin bob bob: cat > {shared}/bob.out\nend 0\n"
        for user in ("bob", "carol"):
            content = (shared / f"{user}.out").read_bytes()
            assert content.count(b"Subject: wrapped") == 1
            assert f"Delivered-To: {user}@localhost".encode() in content
    finally:
        d.stop()


# -- forward-only and expand-only --------------------------------------------------------


def test_forward_only_and_expand_only(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    """forward-only: a recipient is accepted only when aliases or .forward take it
    to addresses (which the rules route again); expand-only: only when they give a
    delivery (an address, a file, a command), never the plain user."""
    users = users_table(shared)
    write_forward(shared, "dave", "carol@localhost\n")
    write_forward(shared, "erin", "|cat > " + str(shared / "erin.pipe") + "\n")
    port = free_port()
    d = Daemon(
        tmp_path,
        f"""{users}
table aliases {{ list = "someone@example.net", team = "carol", \
archive = "{shared}/archive.mbox" }}
listen on 127.0.0.1 port {port}
action "fwd" forward-only alias <aliases> userbase <users>
action "exp" expand-only alias <aliases> userbase <users>
action "box" maildir "{shared}/%{{user.username}}" userbase <users>
action "out" relay host "smtp://127.0.0.1:{free_port()}"
match from any for domain "fwd.test" action "fwd"
match from any for domain "exp.test" action "exp"
match from any for domain "localhost" action "box"
match from any for domain "example.net" action "out"
""",
        paused=("mta",),  # the relayed envelope stays queued: nothing leaves this host
    )
    d.start()
    try:
        replies = send(
            port,
            [
                "list@fwd.test",
                "dave@fwd.test",
                "team@fwd.test",
                "carol@fwd.test",
                "archive@fwd.test",
                "archive@exp.test",
                "erin@exp.test",
                "dave@exp.test",
                "team@exp.test",
                "carol@exp.test",
            ],
            message("only"),
        )
        expansion = "Mailing list expansion problem"
        assert replies == {
            "list@fwd.test": (250, "2.1.5 Destination address valid: Recipient ok"),
            "dave@fwd.test": (250, "2.1.5 Destination address valid: Recipient ok"),
            "team@fwd.test": (424, f"4.2.4 {expansion}: <team@fwd.test>"),
            "carol@fwd.test": (424, f"4.2.4 {expansion}: <carol@fwd.test>"),
            "archive@fwd.test": (451, "4.3.0 Temporary failure: <archive@fwd.test>"),
            "archive@exp.test": (250, "2.1.5 Destination address valid: Recipient ok"),
            "erin@exp.test": (250, "2.1.5 Destination address valid: Recipient ok"),
            "dave@exp.test": (250, "2.1.5 Destination address valid: Recipient ok"),
            "team@exp.test": (524, f"5.2.4 {expansion}: <team@exp.test>"),
            "carol@exp.test": (524, f"5.2.4 {expansion}: <carol@exp.test>"),
        }
        # dave's .forward (twice: fwd.test and exp.test) -> carol's maildir; erin's
        # .forward -> her command; the archive alias -> the file; list -> relayed
        wait_for(lambda: d.log().count("result=Ok") == 4)
        assert subjects(shared / "carol") == ["only", "only"]
        assert maildirs(shared) == ["carol"]
        assert (shared / "erin.pipe").read_bytes().count(b"Subject: only") == 1
        archive = mailbox.mbox(str(shared / "archive.mbox"))
        assert [m["Subject"] for m in archive] == ["only"]
        archive.close()
        d.stop()
        [relayed] = list(d.store().iter_envelopes())
        assert relayed.kind is EnvelopeKind.MTA and relayed.dispatcher == "out"
        assert str(relayed.dest) == "someone@example.net"
        assert str(relayed.rcpt) == "list@fwd.test"
    finally:
        d.stop()


# -- alias tables --------------------------------------------------------------------------


def test_alias_table_values(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    members = shared / "members"
    members.write_text("# the list\ndave, erin@localhost\n")
    aliases = shared / "aliases"
    aliases.write_text(
        "team: bob, carol@localhost\n"
        f"archive: {shared}/archive.mbox\n"
        f'piped: "|cat > {shared}/piped.out"\n'
        f"club: :include:{members}\n"
        "gone: error:550 5.1.6 Moved away\n"
        "later: error:450 Try again later\n"
        "ping: pong\n"
        "pong: ping\n"
        "echo: echo2, alice\n"
        "echo2: echo\n"
    )
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
table aliases file:{aliases}
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/%{{user.username}}" alias <aliases> userbase <users>
match from any for domain "localhost" action "local"
""",
    )
    try:
        ok = (250, "2.1.5 Destination address valid: Recipient ok")
        replies = send(
            port,
            [
                "team@localhost",
                "archive@localhost",
                "piped@localhost",
                "club@localhost",
                "gone@localhost",
                "later@localhost",
                "ping@localhost",
                "echo@localhost",
            ],
            message("aliased"),
            sender="someone@example.org",
        )
        assert replies == {
            "team@localhost": ok,
            "archive@localhost": ok,
            "piped@localhost": ok,
            "club@localhost": ok,
            "gone@localhost": (550, "5.1.6 Moved away: <gone@localhost>"),
            "later@localhost": (450, "4.0.0 Try again later: <later@localhost>"),
            # a loop with nothing else in it expands to nothing
            "ping@localhost": (524, "5.2.4 Mailing list expansion problem: <ping@localhost>"),
            # a loop that also names a user delivers to that user, once
            "echo@localhost": ok,
        }
        wait_for(lambda: delivered(d, 7))
        assert d.log().count("result=Ok") == 7
        for user in ("alice", "bob", "carol", "dave", "erin"):
            assert subjects(shared / user) == ["aliased"], user
        assert maildirs(shared) == ["alice", "bob", "carol", "dave", "erin"]
        delivered_to = {
            user: next(iter(mailbox.Maildir(str(shared / user), create=False)))["Delivered-To"]
            for user in ("alice", "bob", "carol", "dave", "erin")
        }
        assert delivered_to == {
            "alice": "echo@localhost",
            "bob": "team@localhost",
            "carol": "team@localhost",
            "dave": "club@localhost",
            "erin": "club@localhost",
        }
        archive = mailbox.mbox(str(shared / "archive.mbox"))
        [archived] = list(archive)
        archive.close()
        assert archived["Subject"] == "aliased"
        assert archived.get_from().startswith("someone@example.org ")
        assert (shared / "piped.out").read_bytes().count(b"Subject: aliased") == 1
        if ROOT:  # files and commands of an alias table belong to no user: nobody
            assert (shared / "archive.mbox").stat().st_uid == NOBODY
            assert (shared / "piped.out").stat().st_uid == NOBODY
        # the delivery log line, with the address the alias expanded to and its user
        evpids = set(re.findall(r"smtp envelope evpid=([0-9a-f]{16})", d.log()))
        [line] = [
            line
            for line in d.log().splitlines()
            if "mda delivery" in line and "to=<carol@localhost>" in line
        ]
        found = re.search(
            r"mda delivery evpid=([0-9a-f]{16}) from=<someone@example\.org> "
            r"to=<carol@localhost> rcpt=<team@localhost> user=carol delay=\d+s "
            r"result=Ok stat=Delivered$",
            line,
        )
        assert found is not None, line
        assert found.group(1) in evpids
    finally:
        d.stop()


# -- virtual, userbase, user, .forward -------------------------------------------------


def test_virtual_userbase_user_and_forward_files(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    users = users_table(shared)
    write_forward(shared, "dave", "carol\n")
    write_forward(shared, "erin", "# keep a copy\nerin, bob@localhost\n")
    d, port = start(
        tmp_path,
        f"""{users}
table virt {{ "info@example.test" = "bob", "sales@example.test" = "carol@localhost, dave", \
"@example.test" = "erin" }}
listen on 127.0.0.1 port PORT
action "virtual" maildir "{shared}/%{{user.username}}" virtual <virt> userbase <users>
action "vhost" maildir "{shared}/vhost/%{{user.username}}/%{{rcpt.user}}" user "nobody" \
userbase <users>
action "local" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for domain "example.test" action "virtual"
match from any for domain "vhost.test" action "vhost"
match from any for domain "localhost" action "local"
""",
    )
    try:
        ok = (250, "2.1.5 Destination address valid: Recipient ok")
        batches = {
            "virtual": ["info@example.test", "sales@example.test", "anyone@example.test"],
            "vhost": ["dave@vhost.test", "frank@vhost.test"],
            "forward": ["dave@localhost", "erin@localhost", "frank@localhost"],
        }
        replies = {name: send(port, rcpts, message(name)) for name, rcpts in batches.items()}
        unknown = "5.1.1 Invalid recipient"
        assert replies == {
            "virtual": dict.fromkeys(batches["virtual"], ok),
            "vhost": {
                "dave@vhost.test": ok,
                "frank@vhost.test": (550, f"{unknown}: <frank@vhost.test>"),
            },
            "forward": {
                "dave@localhost": ok,
                "erin@localhost": ok,
                "frank@localhost": (550, f"{unknown}: <frank@localhost>"),
            },
        }
        wait_for(lambda: delivered(d, 9))
        assert d.log().count("result=Ok") == 9
        # virtual (5): info -> bob; sales -> carol@localhost (routed again, to
        # "local") and dave (whose .forward sends it on to carol); the catch-all ->
        # erin, whose .forward keeps a copy and sends one to bob
        # vhost (1): delivered as "nobody" whatever the user, dave's .forward skipped
        # local (3): dave's .forward -> carol; erin's -> erin and bob
        assert subjects(shared / "bob") == ["forward", "virtual", "virtual"]
        assert subjects(shared / "carol") == ["forward", "virtual", "virtual"]
        assert subjects(shared / "erin") == ["forward", "virtual"]
        assert subjects(shared / "vhost" / "nobody" / "dave") == ["vhost"]
        assert maildirs(shared) == ["bob", "carol", "erin", "vhost/nobody/dave"]
        assert not (shared / "dave").exists()
    finally:
        d.stop()


# -- sub-addr-delim ---------------------------------------------------------------------


def test_sub_address_delimiter(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    script = shared / "mda.sh"
    script.write_text(f'#!/bin/sh\ncat > "{shared}/$1.$USER.$EXTENSION.$LOCAL.out"\n')
    script.chmod(0o755)
    lists = shared / "bob" / ".lists"
    for sub in ("cur", "new", "tmp"):
        (lists / sub).mkdir(parents=True)
    for path in (shared / "bob", lists, *(lists / sub for sub in ("cur", "new", "tmp"))):
        if ROOT:
            os.chown(path, NOBODY, NOBODY)
    d, port = start(
        tmp_path,
        f"""{users_table(shared)}
smtp sub-addr-delim "-"
listen on 127.0.0.1 port PORT
action "mda" mda "{script} %{{rcpt.user}}:%{{rcpt.user:strip}}" userbase <users>
action "box" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for domain "mda.test" action "mda"
match from any for domain "localhost" action "box"
""",
    )
    try:
        ok = (250, "2.1.5 Destination address valid: Recipient ok")
        replies = send(
            port,
            ["bob-tag@localhost", "bob-lists@localhost", "bob+tag@localhost", "carol-x@mda.test"],
            message("tagged"),
        )
        assert replies == {
            "bob-tag@localhost": ok,
            "bob-lists@localhost": ok,
            # "+" is no delimiter any more: there is no user "bob+tag"
            "bob+tag@localhost": (550, "5.1.1 Invalid recipient: <bob+tag@localhost>"),
            "carol-x@mda.test": ok,
        }
        wait_for(lambda: delivered(d, 3))
        # the sub-address names a Maildir++ folder when it exists, else new/
        assert subjects(shared / "bob") == ["tagged"]
        assert subjects(lists) == ["tagged"]
        [message_] = list(mailbox.Maildir(str(shared / "bob"), create=False))
        assert message_["Delivered-To"] == "bob-tag@localhost"
        # the MDA sees the user, EXTENSION, the local part and %{rcpt.user} (stripped)
        outputs = sorted(p.name for p in shared.glob("*.out"))
        assert outputs == ["carol-x:carol.carol.x.carol-x.out"]
        assert b"Subject: tagged" in (shared / outputs[0]).read_bytes()
    finally:
        d.stop()


# -- lmtp rcpt-to ----------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(DOVECOT), reason="dovecot-lmtpd is not installed")
def test_lmtp_rcpt_to_sends_the_address_not_the_user(tmp_path: pathlib.Path) -> None:
    """Both addresses expand (virtual) to the user bob.  Without ``rcpt-to`` the LMTP
    RCPT is the user name, so dovecot's bob gets it; with it, the address, so
    dovecot's carol does."""
    with dovecot_server(["bob", "carol"]) as dovecot:
        d, port = start(
            tmp_path,
            f"""table users {{ bob = "{NOBODY}:{NOBODY}:/nonexistent" }}
table virt {{ "carol@localhost" = "bob", "dan@localhost" = "bob" }}
listen on 127.0.0.1 port PORT
action "user" lmtp "{dovecot.socket}" virtual <virt> userbase <users>
action "address" lmtp "{dovecot.socket}" rcpt-to virtual <virt> userbase <users>
match from any for rcpt-to "carol@localhost" action "address"
match from any for domain "localhost" action "user"
""",
        )
        try:
            replies = send(port, ["carol@localhost", "dan@localhost"], message("lmtp"))
            assert all(code == 250 for code, _ in replies.values()), replies
            wait_for(lambda: delivered(d, 2))
            [to_bob] = list(dovecot.maildir("bob"))
            [to_carol] = list(dovecot.maildir("carol"))
            assert "dan@localhost" in to_bob.get_all("Delivered-To", [])
            assert "carol@localhost" in to_carol.get_all("Delivered-To", [])
            assert "user=bob" in d.log()
        finally:
            d.stop()


# -- a full filesystem -------------------------------------------------------------------------


def test_a_full_maildir_filesystem_is_retried_then_delivered_once(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mount = shared / "full"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=1777", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    d: Daemon | None = None
    try:
        filler = mount / "filler"
        with open(filler, "wb", buffering=0) as stream:
            try:
                while True:
                    stream.write(b"x" * 4096)
            except OSError:
                pass
        d, port = start(
            tmp_path,
            f"""{users_table(shared)}
listen on 127.0.0.1 port PORT
action "full" maildir "{mount}/%{{user.username}}" userbase <users>
action "back" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for rcpt-to "alice@localhost" action "back"
match from any for domain "localhost" action "full"
""",
        )
        send(port, ["bob@localhost"], message("full"))
        wait_for(lambda: "result=TempFail" in d.log())
        assert "No space left on device" in d.log()
        assert len(d.queued()) == 1
        assert subjects(mount / "bob") == []
        assert not (mount / "bob" / "tmp").exists() or not any((mount / "bob" / "tmp").iterdir())
        filler.unlink()
        subprocess.run(
            [*MTACTL, "--spool", str(d.spool), "schedule", "all"],
            check=True,
            capture_output=True,
        )
        wait_for(lambda: delivered(d, 1))
        assert subjects(mount / "bob") == ["full"]
        assert list((mount / "bob" / "tmp").iterdir()) == []
        assert d.log().count("result=TempFail") == 1
        assert not has_mail(shared / "alice")  # retried, never bounced
    finally:
        if d is not None:
            d.stop()
        subprocess.run(["umount", str(mount)], check=True)


# -- mbox into the system mailbox as root --------------------------------------------


def test_mbox_as_root_delivers_to_the_system_mailbox(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    if not ROOT:
        pytest.skip("the system mailbox (/var/mail) is only used when running as root")
    if not os.path.isdir("/var/mail"):
        pytest.skip("there is no /var/mail on this machine")
    user = "mtatest" + secrets.token_hex(4)
    mailbox_path = pathlib.Path("/var/mail") / user
    assert not mailbox_path.exists()
    port = free_port()
    d = Daemon(
        tmp_path,
        f"""table users {{ {user} = "{NOBODY}:{NOBODY}:/nonexistent" }}
listen on 127.0.0.1 port {port}
action "local" mbox userbase <users>
match from any for domain "localhost" action "local"
""",
        paused=(),
    )
    d.env.pop("MTA_MBOX_DIR", None)  # the system mailbox, not a test directory
    d.start()
    try:
        send(port, [f"{user}@localhost"], message("system"))
        wait_for(lambda: delivered(d, 1))
        box = mailbox.mbox(str(mailbox_path))
        [delivered_message] = list(box)
        box.close()
        assert delivered_message["Subject"] == "system"
        assert delivered_message.get_from().startswith("alice@localhost ")
        st = mailbox_path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (NOBODY, 0o600)
        assert not pathlib.Path(f"{mailbox_path}.lock").exists()
    finally:
        d.stop()
        for leftover in (mailbox_path, pathlib.Path(f"{mailbox_path}.lock")):
            leftover.unlink(missing_ok=True)
