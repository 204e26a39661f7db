"""pobox: a mail server with one durable store per account, served over IMAP and POP3."""

__version__ = "0.1.0"
