"""pobox.mail.threading on cases the differential test with Dovecot does not reach."""

from __future__ import annotations

from pobox.mail.threading import Item, message_ids, ordered_subject, references, render


def _item(n: int, refs: tuple[str, ...] = (), subject: str = "S", reply: bool = False) -> Item:
    return Item(n, n, f"m{n}@x", refs, subject, reply, float(n))


def test_a_chain_of_thousands_of_replies_is_one_thread() -> None:
    items = [_item(1)] + [_item(n, (f"m{n - 1}@x",), reply=True) for n in range(2, 5001)]
    roots = references(items)
    assert len(roots) == 1
    assert render(roots) == b"(" + b" ".join(b"%d" % n for n in range(1, 5001)) + b")"


def test_many_threads_of_one_subject_merge_in_linear_time() -> None:
    # 20,000 messages with no references and three subjects: merged under three threads
    items = [_item(n, subject="ABC"[n % 3]) for n in range(1, 20001)]
    roots = references(items)
    assert len(roots) == 3
    assert all(node.item is None and len(node.children) > 1 for node in roots)


def test_orderedsubject_numbers_and_message_ids() -> None:
    items = [_item(3, subject="B"), _item(1, subject="A"), _item(2, subject="A")]
    assert render(ordered_subject(items)) == b"(1 2)(3)"
    assert render(ordered_subject(items), {1: 7, 2: 8, 3: 9}) == b"(7 8)(9)"
    assert message_ids("<a@b> junk <c d> <e@f>") == ["a@b", "e@f"]
