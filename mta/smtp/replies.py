"""Every reply the SMTP server state machine gives by itself, with OpenSMTPD's texts
(reference section 3) and the codes DESIGN.md changes (452, 552, 555, PIPELINING)."""

from __future__ import annotations

from mta.reply import Reply

__all__ = [
    "ALREADY_SECURE",
    "AUTH_CANCELLED",
    "AUTH_NO_PARAMETERS",
    "AUTH_OK",
    "AUTH_PROMPT_PASSWORD",
    "AUTH_PROMPT_PLAIN",
    "AUTH_PROMPT_USERNAME",
    "AUTH_SYNTAX",
    "BAD_CHARACTERS",
    "BYE",
    "COMMAND_TOO_LONG",
    "DATA_GO_AHEAD",
    "DATA_NUL",
    "DATA_PIPELINED",
    "DATA_TOO_BIG",
    "EXPN",
    "EXPN_ARGUMENT",
    "HELP",
    "LINE_TOO_LONG",
    "MAIL_OK",
    "MUST_AUTH",
    "MUST_STARTTLS",
    "NOOP_OK",
    "NOT_ALLOWED",
    "NOT_SUPPORTED",
    "NO_ARGUMENTS",
    "NO_RECIPIENT",
    "PIPELINING_REFUSED",
    "RCPT_OK",
    "RECIPIENT_SYNTAX",
    "RSET_OK",
    "SENDER_SYNTAX",
    "SIZE_TOO_BIG",
    "TLS_NO_PARAMETERS",
    "TLS_READY",
    "TOO_MANY_MAILS",
    "TOO_MANY_RECIPIENTS",
    "UNRECOGNIZED",
    "UTF8_INVALID",
    "UTF8_REQUIRED",
    "VRFY",
    "VRFY_ARGUMENT",
    "WIZ",
    "already_authenticated",
    "already_identified",
    "auth_method",
    "banner",
    "ehlo",
    "hello_required",
    "helo",
    "invalid_arguments",
    "invalid_domain",
    "message_accepted",
    "unsupported_option",
]

SOFTWARE = "mta"


def _invalid(code: int, text: str, *, close: bool = False) -> Reply:
    return Reply.of(code, "5.5.1", f"Invalid command: {text}", close=close)


def invalid_arguments(text: str, code: int = 501) -> Reply:
    return Reply.of(code, "5.5.4", f"Invalid command arguments: {text}")


def banner(hostname: str) -> Reply:
    return Reply.of(220, None, f"{hostname} ESMTP {SOFTWARE}")


def _greeting(hostname: str, domain: str, peer: str) -> str:
    return f"{hostname} Hello {domain} [{peer}], pleased to meet you"


def helo(hostname: str, domain: str, peer: str) -> Reply:
    return Reply.of(250, None, _greeting(hostname, domain, peer))


def ehlo(hostname: str, domain: str, peer: str, extensions: list[str]) -> Reply:
    return Reply.of(250, None, _greeting(hostname, domain, peer), *extensions)


def hello_required(verb: str) -> Reply:
    return _invalid(501, f"{verb} requires domain name")


def invalid_domain() -> Reply:
    return invalid_arguments("Invalid domain name")


def already_identified() -> Reply:
    return _invalid(503, "Already identified")


def already_authenticated() -> Reply:
    return _invalid(503, "Already authenticated")


def auth_method(method: str) -> Reply:
    return Reply.of(
        504, "5.7.4", f'Security features not supported: AUTH method "{method}" not supported'
    )


def unsupported_option(option: str) -> Reply:
    return Reply.of(555, "5.5.4", f"Unsupported option {option}")


def message_accepted(msgid: str) -> Reply:
    return Reply.of(250, "2.0.0", f"{msgid} Message accepted for delivery")


NOT_ALLOWED = _invalid(503, "Command not allowed at this point.")
NOT_SUPPORTED = _invalid(503, "Command not supported")
ALREADY_SECURE = _invalid(503, "Channel already secured")
UNRECOGNIZED = _invalid(500, "Command unrecognized")
WIZ = _invalid(500, "this feature is not supported yet ;-)")
NO_ARGUMENTS = invalid_arguments("command does not accept arguments.", code=500)
TLS_NO_PARAMETERS = invalid_arguments("No parameters allowed")
AUTH_NO_PARAMETERS = invalid_arguments("No parameters given")
BAD_CHARACTERS = Reply.of(501, "5.5.2", "Syntax error: Invalid character in command")
PIPELINING_REFUSED = _invalid(500, "Pipelining not supported", close=True)
DATA_PIPELINED = _invalid(500, "Message content sent before the 354 reply", close=True)
LINE_TOO_LONG = Reply.of(500, "5.0.0", "Line too long", close=True)
COMMAND_TOO_LONG = Reply.of(500, "5.0.0", "Command line too long", close=True)

NOOP_OK = Reply.of(250, "2.0.0", "Ok")
RSET_OK = Reply.of(250, "2.0.0", "Reset state")
BYE = Reply.of(221, "2.0.0", "Bye", close=True)
HELP = Reply.of(214, "2.0.0", f"This is {SOFTWARE}", "End of HELP info")
VRFY = Reply.of(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
EXPN = Reply.of(252, "2.5.2", "Cannot EXPN list, but will accept message and attempt delivery")
VRFY_ARGUMENT = invalid_arguments("VRFY requires an argument")
EXPN_ARGUMENT = invalid_arguments("EXPN requires an argument")

TLS_READY = Reply.of(220, "2.0.0", "Ready to start TLS")

AUTH_PROMPT_PLAIN = Reply.of(334, None, "")
AUTH_PROMPT_USERNAME = Reply.of(334, None, "VXNlcm5hbWU6")
AUTH_PROMPT_PASSWORD = Reply.of(334, None, "UGFzc3dvcmQ6")
AUTH_SYNTAX = Reply.of(501, "5.5.2", "Syntax error: Syntax error")
AUTH_CANCELLED = Reply.of(501, "5.7.0", "Authentication cancelled")
AUTH_OK = Reply.of(235, "2.0.0", "Authentication succeeded")

MUST_STARTTLS = _invalid(530, "Must issue a STARTTLS command first")
MUST_AUTH = _invalid(530, "Must issue an AUTH command first")
TOO_MANY_MAILS = Reply.of(452, "4.5.3", "Too many recipients: Too many messages sent")
TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Too many recipients: Too many recipients")
SENDER_SYNTAX = Reply.of(553, "5.1.0", "Sender address syntax error")
RECIPIENT_SYNTAX = Reply.of(501, "5.1.3", "Recipient address syntax error")
UTF8_REQUIRED = Reply.of(553, "5.6.7", "Non-ASCII addresses require SMTPUTF8")
UTF8_INVALID = Reply.of(553, "5.6.7", "Address is not valid UTF-8")
SIZE_TOO_BIG = Reply.of(
    552, "5.3.4", "Message too big for system: Message size exceeds fixed maximum message size"
)
MAIL_OK = Reply.of(250, "2.0.0", "Ok")
RCPT_OK = Reply.of(250, "2.1.5", "Destination address valid: Recipient ok")

NO_RECIPIENT = invalid_arguments("No recipient specified", code=503)
DATA_GO_AHEAD = Reply.of(354, None, 'Enter mail, end with "." on a line by itself')
DATA_TOO_BIG = Reply.of(
    552, "5.3.4", "Message too big for system: Transaction failed, message too big"
)
DATA_NUL = Reply.of(554, "5.6.0", "Message content rejected: NUL character in message")
