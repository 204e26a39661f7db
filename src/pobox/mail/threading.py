"""Threading algorithms of RFC 5256 §2.2 and §2.1 (ORDEREDSUBJECT), sans-IO.

Input: one :class:`Item` per message (in sequence order); output: a forest of
:class:`Thread` nodes (a node without a message is a dummy that holds siblings together), and
:func:`render` writes it as IMAP's thread-list.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

_MSG_ID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def message_ids(text: str) -> list[str]:
    """The valid message ids (``<local@domain>``) in a header's text, in order."""
    return _MSG_ID.findall(text)


def thread_references(references: str, in_reply_to: str) -> tuple[str, ...]:
    """What REFERENCES threads a message by (RFC 5256 §2.2 (1A)): the ids of its References
    header, else the first id of In-Reply-To; each header's text as one string."""
    refs = message_ids(references)
    if not refs:
        refs = message_ids(in_reply_to)[:1]
    return tuple(refs)


def pack_references(ids: Iterable[str]) -> str:
    """The ids as the store keeps them (``blobs.thread_refs``): separated by spaces (an id holds
    none), "" for none."""
    return " ".join(ids)


def unpack_references(text: str) -> tuple[str, ...]:
    """The inverse of :func:`pack_references`."""
    return tuple(text.split())


@dataclass(frozen=True, slots=True)
class Item:
    uid: int
    seq: int  # sequence number: ties of date fall back to it
    message_id: str | None
    references: tuple[str, ...]  # References, else the first id of In-Reply-To
    subject: str  # base subject, collated (pobox.mail.sortkeys)
    reply: bool  # the base subject extraction removed a reply/forward mark
    date: float  # the DATE sort key: sent date, else internal date


@dataclass(eq=False, slots=True)
class Thread:
    item: Item | None = None
    children: list[Thread] = field(default_factory=list)
    parent: Thread | None = None

    def key(self) -> tuple[float, int]:
        """Sent date and sequence number of this message, or of a dummy's first child."""
        node: Thread = self
        while node.item is None and node.children:
            node = node.children[0]
        if node.item is None:
            return (0.0, 0)
        return (node.item.date, node.item.seq)

    def first_item(self) -> Item | None:
        node: Thread = self
        while node.item is None and node.children:
            node = node.children[0]
        return node.item


def _is_ancestor(maybe: Thread, node: Thread) -> bool:
    """Whether *maybe* is *node* or one of its ancestors."""
    if maybe is node:
        return True
    if not maybe.children:  # a leaf is nobody's ancestor: no walk up a long chain of replies
        return False
    current: Thread | None = node
    while current is not None:
        if current is maybe:
            return True
        current = current.parent
    return False


def _unlink(node: Thread) -> None:
    if node.parent is not None:
        node.parent.children.remove(node)
        node.parent = None


def _link(parent: Thread, child: Thread) -> None:
    _unlink(child)
    child.parent = parent
    parent.children.append(child)


@contextmanager
def _no_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: a thread forest is 100,000 objects with parent
    links, and the collections their creation triggers cost as much as the algorithm."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def references(items: Sequence[Item]) -> list[Thread]:
    """THREAD=REFERENCES (RFC 5256 §2.2)."""
    with _no_collection():
        return _references(items)


def _references(items: Sequence[Item]) -> list[Thread]:
    table: dict[str, Thread] = {}
    unique = 0
    for item in items:
        # (1A) link the referenced messages' containers in order, without breaking links made
        # before and without loops
        previous: Thread | None = None
        for ref in item.references:
            container = table.setdefault(ref, Thread())
            if (
                previous is not None
                and container.parent is None
                and not _is_ancestor(container, previous)
            ):
                _link(previous, container)
            previous = container
        # (1B) this message's own container
        own = table.get(item.message_id) if item.message_id else None
        if own is None or own.item is not None:
            unique += 1
            key = item.message_id if own is None and item.message_id else f"\0unique{unique}"
            own = table[key] = Thread()
        own.item = item
        # (1C) its parent is the last reference (or none), unless that makes a loop
        _unlink(own)
        if previous is not None and not _is_ancestor(own, previous):
            _link(previous, own)
    # (2), (3): the root set
    roots = [node for node in table.values() if node.parent is None]
    # (4) prune the dummies
    roots = _prune(roots, top=True)
    for node in roots:
        node.parent = None
    # (5) top-level siblings by sent date (a dummy: of its first child, once its children are
    # sorted)
    for node in roots:
        if node.item is None:
            node.children.sort(key=Thread.key)
    roots.sort(key=Thread.key)
    # (6) threads with the same base subject
    roots = _merge_subjects(roots)
    # (7) siblings by sent date, all the way down
    for node in roots:
        _sort_children(node)
    return roots


def _prune(roots: list[Thread], *, top: bool) -> list[Thread]:
    """(4) Dummies go: an empty one entirely, one with children gives them its place (at the
    top only when it holds a single child). Bottom up, without recursion: a thread may be a
    chain of thousands of replies."""
    for node in _post_order(roots):
        node.children = _pruned(node.children, top=False)
        for child in node.children:
            child.parent = node
    return _pruned(roots, top=top)


def _pruned(nodes: list[Thread], *, top: bool) -> list[Thread]:
    out: list[Thread] = []
    for node in nodes:
        if node.item is not None:
            out.append(node)
        elif not node.children:
            continue  # (4A) an empty dummy goes
        elif top and len(node.children) > 1:
            out.append(node)  # (4B) a dummy holding several threads together at the top stays
        else:
            out.extend(node.children)  # (4B) otherwise its children take its place
    return out


def _post_order(roots: list[Thread]) -> list[Thread]:
    """Every node below *roots* (and they), children before their parent."""
    order: list[Thread] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    order.reverse()
    return order


def _merge_subjects(roots: list[Thread]) -> list[Thread]:
    """(6) Threads whose (first) message has the same base subject become one."""
    table: dict[str, Thread] = {}
    for node in roots:  # (6B)
        item = node.first_item()
        if item is None or not item.subject:
            continue
        old = table.get(item.subject)
        if (
            old is None
            or (old.item is None and node.item is not None)
            or (
                old.item is not None
                and node.item is not None
                and old.item.reply
                and not node.item.reply
            )
        ):
            table[item.subject] = node
    out: list[Thread | None] = list(roots)
    where = {id(node): i for i, node in enumerate(roots)}
    for node in roots:  # (6C)
        if node.parent is not None:
            continue  # merged into another thread already
        item = node.first_item()
        if item is None or not item.subject:
            continue
        target = table[item.subject]
        if target is node:
            continue
        if node.item is None and target.item is None:  # both dummies: one holds all
            for child in list(node.children):
                _link(target, child)
            out[where[id(node)]] = None
        elif target.item is None:  # the dummy takes the message
            _link(target, node)
        elif node.item is None:  # the dummy takes the message, and its place
            _link(node, target)
            table[item.subject] = node
        elif not target.item.reply and node.item.reply:  # a reply under the original
            _link(target, node)
        else:  # two of a kind: siblings under a new dummy, where the first was
            dummy = Thread()
            out[where[id(target)]] = dummy
            where[id(dummy)] = where[id(target)]
            _link(dummy, target)
            _link(dummy, node)
            table[item.subject] = dummy
    return [n for n in out if n is not None and n.parent is None]


def _sort_children(root: Thread) -> None:
    for node in _post_order([root]):
        node.children.sort(key=Thread.key)


def ordered_subject(items: Sequence[Item]) -> list[Thread]:
    """THREAD=ORDEREDSUBJECT (RFC 5256 §2.1): by base subject, then date; the first message of
    each subject is the parent of the others; threads in the order of their first message."""
    groups: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: (i.subject, i.date, i.seq)):
        groups.setdefault(item.subject, []).append(item)
    roots = []
    for group in groups.values():
        root = Thread(group[0])
        for item in group[1:]:
            _link(root, Thread(item))
        roots.append(root)
    roots.sort(key=Thread.key)
    return roots


def render(roots: Iterable[Thread], number: dict[int, int] | None = None) -> bytes:
    """The thread-list of ``* THREAD`` (UIDs, or message numbers through *number*)."""
    return b"".join(b"(" + _render(node, number) + b")" for node in roots)


def _render(node: Thread, number: dict[int, int] | None) -> bytes:
    parts: list[bytes] = []
    while True:
        if node.item is not None:
            uid = node.item.uid
            parts.append(b"%d" % (uid if number is None else number[uid]))
        if len(node.children) == 1 and node.item is not None:
            node = node.children[0]  # a chain: written as a run of numbers
            continue
        break
    text = b" ".join(parts)
    if node.children:
        nested = b"".join(b"(" + _render(child, number) + b")" for child in node.children)
        text = text + b" " + nested if text else nested
    return text
