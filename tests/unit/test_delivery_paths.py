"""The fast path for MAIL/RCPT addresses (pobox.delivery.data.WholeData._getaddr) gives exactly
what aiosmtpd's own parser gives, for the plain form and everything around it."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from pobox.delivery.data import WholeData


class _Base:
    """A stand-in for aiosmtpd's class: only its ``_getaddr`` is used."""

    local_part_limit = 0

    def _getaddr(self, arg: str) -> Any:
        return SMTP._getaddr(self, arg)  # type: ignore[arg-type]


class Fast(WholeData, _Base):
    pass


def reference(arg: str, limit: int = 0) -> Any:
    base = _Base()
    base.local_part_limit = limit
    return base._getaddr(arg)


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.c>",
        "<bench@localhost>",
        "<First.Last+tag@Example.ORG> SIZE=24576 BODY=8BITMIME",
        "<a@b>  SIZE=1",
        "<a@b>\tSIZE=1",
        "<a@b>x",
        "<>",
        "<> SIZE=5",
        " <a@b>",
        "<a@b>(comment) SIZE=1",
        '<"quoted local"@b.c>',
        "<a..b@c>",
        "<a@[192.0.2.1]>",
        "<@route:a@b>",
        "<a@b",
        "a@b",
        "<a@-b.c>",
        "<a@b_c.d>",
        "",
        "<" + "x" * 70 + "@b.c>",
    ],
)
def test_fast_path_agrees_with_aiosmtpd(arg: str) -> None:
    assert Fast()._getaddr(arg) == reference(arg)
    limited = Fast()
    limited.local_part_limit = 64
    assert limited._getaddr(arg) == reference(arg, 64)


address_text = st.text(
    alphabet=st.sampled_from(list("ab.@<>-+_ \t()\"'[]:=Z9\\")), min_size=0, max_size=30
)


@given(address_text)
def test_fast_path_agrees_on_any_text(arg: str) -> None:
    try:
        expected = reference(arg)
    except Exception as exc:  # aiosmtpd's parser raises on some junk: so must we
        with pytest.raises(type(exc)):
            Fast()._getaddr(arg)
        return
    assert Fast()._getaddr(arg) == expected
