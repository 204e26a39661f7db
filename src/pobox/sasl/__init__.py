"""Sans-IO SASL shared by POP3, IMAP and SMTP (see :mod:`pobox.sasl.mechanisms`)."""

from pobox.sasl.mechanisms import (
    MECHANISMS,
    Challenge,
    Credentials,
    Exchange,
    Failure,
    Step,
    decode,
    encode,
    start,
)

__all__ = [
    "MECHANISMS",
    "Challenge",
    "Credentials",
    "Exchange",
    "Failure",
    "Step",
    "decode",
    "encode",
    "start",
]
