"""mta: a mail transfer agent on trio that implements OpenSMTPD's smtpd.conf(5)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
