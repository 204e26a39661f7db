"""Message parsing done once at delivery/append: MIME tree with byte offsets, envelope, search
fields. Pure functions, no I/O beyond reading the stream handed in, no protocol words."""

from pobox.mail.envelope import Address, Envelope
from pobox.mail.parse import parse_bytes, parse_message
from pobox.mail.structure import MimePart, ParsedMessage

__all__ = ["Address", "Envelope", "MimePart", "ParsedMessage", "parse_bytes", "parse_message"]
