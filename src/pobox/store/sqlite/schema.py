"""SQLite schema and its versioned migrations.

``PRAGMA user_version`` holds the number of migrations applied. A migration is never edited once
released; a change to the schema is a new entry at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE account_settings (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (account_id, key)
    );
    CREATE TABLE aliases (
        alias TEXT PRIMARY KEY COLLATE NOCASE,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE mailboxes (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uidnext INTEGER NOT NULL DEFAULT 1,
        highestmodseq INTEGER NOT NULL DEFAULT 1,
        recent_floor INTEGER NOT NULL DEFAULT 1,
        special_use TEXT,
        UNIQUE (account_id, name)
    );
    CREATE TABLE subscriptions (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (account_id, name)
    );
    CREATE TABLE blobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        refs INTEGER NOT NULL DEFAULT 0,
        structure BLOB NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        from_ TEXT NOT NULL DEFAULT '',
        to_ TEXT NOT NULL DEFAULT '',
        cc TEXT NOT NULL DEFAULT '',
        bcc TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL DEFAULT '',
        sent_date REAL
    );
    CREATE TABLE messages (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        flags INTEGER NOT NULL DEFAULT 0,
        keywords TEXT NOT NULL DEFAULT '',
        internal_date REAL NOT NULL,
        internal_tz INTEGER NOT NULL DEFAULT 0,
        save_date REAL NOT NULL,
        size INTEGER NOT NULL,
        blob INTEGER NOT NULL REFERENCES blobs(id),
        pop3_uidl TEXT,
        pop3_hidden_at REAL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
    CREATE INDEX messages_hidden ON messages (pop3_hidden_at) WHERE pop3_hidden_at IS NOT NULL;
    CREATE TABLE expunged (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
    CREATE TABLE recoverable (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        mailbox_id INTEGER,
        mailbox_name TEXT NOT NULL,
        uid INTEGER NOT NULL,
        uidl TEXT NOT NULL,
        deleted_at REAL NOT NULL,
        still_present INTEGER NOT NULL,
        blob INTEGER REFERENCES blobs(id),
        flags INTEGER NOT NULL DEFAULT 0,
        keywords TEXT NOT NULL DEFAULT '',
        internal_date REAL NOT NULL,
        internal_tz INTEGER NOT NULL DEFAULT 0,
        size INTEGER NOT NULL
    );
    CREATE INDEX recoverable_account ON recoverable (account_id, deleted_at);
    CREATE TABLE change_journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        mailbox_id INTEGER NOT NULL
    );
    """,
    # 2: renderings kept with the content (IMAP ENVELOPE, BODYSTRUCTURE), filled at append or
    # on first use
    """
    ALTER TABLE blobs ADD COLUMN envelope BLOB;
    ALTER TABLE blobs ADD COLUMN bodystructure BLOB
    """,
    # 3: failed-login blocks, listed and lifted by every node (docs/decisions/admin-control.md)
    """
    CREATE TABLE auth_blocks (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        failures INTEGER NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (kind, key)
    )
    """,
    # 4: the outbound queue (content with the row: committed in the same transaction) and the
    # DKIM signing keys (docs/decisions/outbound-queue.md)
    """
    CREATE TABLE outbound (
        id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        created REAL NOT NULL,
        size INTEGER NOT NULL,
        warned INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_until REAL NOT NULL DEFAULT 0,
        content BLOB NOT NULL
    );
    CREATE INDEX outbound_due ON outbound (next_attempt);
    CREATE TABLE outbound_rcpt (
        queue_id TEXT NOT NULL REFERENCES outbound(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (queue_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE dkim_keys (
        domain TEXT PRIMARY KEY,
        selector TEXT NOT NULL,
        private_key BLOB NOT NULL,
        created REAL NOT NULL
    )
    """,
    # 5: the full-text index (docs/decisions/full-text-search.md): trigram tables of each
    # content's folded text, filled in the background; text_state 0 = not indexed yet
    """
    CREATE VIRTUAL TABLE text_index USING fts5(
        header, body, tokenize = 'trigram case_sensitive 1', detail = 'none'
    );
    CREATE VIRTUAL TABLE field_index USING fts5(
        subject, from_, to_, cc, bcc, tokenize = 'trigram case_sensitive 1', detail = 'none'
    );
    ALTER TABLE blobs ADD COLUMN text_state INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX blobs_unindexed ON blobs (id) WHERE text_state = 0;
    CREATE INDEX messages_blob ON messages (blob, mailbox_id)
    """,
    # 6: app passwords (docs/app-passwords.md): more credentials for one account, each with
    # a label unique in its account; AUTOINCREMENT so that an id is never used twice
    """
    CREATE TABLE logins (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        last_address TEXT,
        UNIQUE (account_id, label)
    )
    """,
    # 7: quota usage (docs/quota.md, docs/decisions/quota.md): one row per account, kept exact
    # in the transaction of every write; filled here from the messages there are. *warned* is
    # the last warning level (percent) delivered, low_* the lowest usage since that warning
    """
    CREATE TABLE quota_usage (
        account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        storage BIGINT NOT NULL DEFAULT 0,
        messages BIGINT NOT NULL DEFAULT 0,
        warned INTEGER NOT NULL DEFAULT 0,
        low_storage BIGINT NOT NULL DEFAULT 0,
        low_messages BIGINT NOT NULL DEFAULT 0
    );
    INSERT INTO quota_usage (account_id, storage, messages, low_storage, low_messages)
    SELECT a.id, coalesce(sum(m.size), 0), count(m.uid), coalesce(sum(m.size), 0), count(m.uid)
    FROM accounts a LEFT JOIN mailboxes b ON b.account_id = a.id
    LEFT JOIN messages m ON m.mailbox_id = b.id GROUP BY a.id
    """,
    # 8: access control lists of mailboxes (RFC 4314; docs/decisions/shared-folders.md): an
    # identifier is an account address, "anyone", "authenticated", or one of them after "-"
    # (negative rights); rights are RFC 4314 letters in canonical order
    """
    CREATE TABLE mailbox_acl (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        identifier TEXT NOT NULL,
        rights TEXT NOT NULL,
        PRIMARY KEY (mailbox_id, identifier)
    );
    CREATE INDEX mailbox_acl_identifier ON mailbox_acl (identifier)
    """,
    # 9: folder policies (docs/policies.md): per-account settings by folder name, special-use
    # attribute or '*', and the date indexes the sweeper selects due messages by
    """
    CREATE TABLE folder_policies (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        folder TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (account_id, folder, key)
    ) WITHOUT ROWID;
    CREATE INDEX messages_save_date ON messages (mailbox_id, save_date);
    CREATE INDEX messages_internal_date ON messages (mailbox_id, internal_date)
    """,
    # 10: webmail sessions (docs/decisions/webmail-sessions.md): only a SHA-256 of each session
    # id is kept; a session goes with its account, and with the app password it logged in with
    """
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        login_id INTEGER REFERENCES logins(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        last_seen REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX web_sessions_login ON web_sessions (login_id);
    CREATE INDEX web_sessions_account ON web_sessions (account_id)
    """,
    # 11: IMAP METADATA annotations (RFC 5464; docs/decisions/metadata.md): mailbox_id NULL is
    # a server annotation, owner_id NULL a /shared one (else /private to that account); the
    # entry name is kept lower-case (entry names are case-insensitive); values are bytes
    """
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY,
        mailbox_id INTEGER REFERENCES mailboxes(id) ON DELETE CASCADE,
        owner_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value BLOB NOT NULL
    );
    CREATE UNIQUE INDEX annotations_key
        ON annotations (coalesce(mailbox_id, 0), coalesce(owner_id, 0), name);
    CREATE INDEX annotations_owner ON annotations (owner_id)
    """,
    # 12: THREAD=REFERENCES' parent ids of each content (References, else In-Reply-To's first
    # id; pobox.mail.threading.pack_references), written at append, copy and restore.
    # Content stored before stays NULL: THREAD reads those from the stored structure
    # (docs/decisions/thread-references.md)
    """
    ALTER TABLE blobs ADD COLUMN thread_refs TEXT
    """,
    # 13: each mailbox's counters for STATUS without reading its messages (messages, octets,
    # unseen, \Deleted and their octets; docs/decisions/mailbox-counters.md), kept by triggers
    # in the transaction of every write to messages; filled here from the messages there are.
    # Flag bits as pobox.store.rows: \Seen 1, \Deleted 8
    """
    ALTER TABLE mailboxes ADD COLUMN n_messages INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN n_octets INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN n_unseen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN n_deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN n_deleted_octets INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET (n_messages, n_octets, n_unseen, n_deleted, n_deleted_octets) = (
        SELECT count(*), coalesce(sum(size), 0), coalesce(sum((flags & 1) = 0), 0),
            coalesce(sum((flags & 8) != 0), 0),
            coalesce(sum(CASE WHEN flags & 8 THEN size ELSE 0 END), 0)
        FROM messages WHERE mailbox_id = mailboxes.id);
    CREATE INDEX messages_unseen ON messages (mailbox_id, uid) WHERE (flags & 1) = 0;
    CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
        UPDATE mailboxes SET n_messages = n_messages + 1, n_octets = n_octets + new.size,
            n_unseen = n_unseen + ((new.flags & 1) = 0),
            n_deleted = n_deleted + ((new.flags & 8) != 0),
            n_deleted_octets = n_deleted_octets + CASE WHEN new.flags & 8 THEN new.size ELSE 0 END
        WHERE id = new.mailbox_id;
    END;
    CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
        UPDATE mailboxes SET n_messages = n_messages - 1, n_octets = n_octets - old.size,
            n_unseen = n_unseen - ((old.flags & 1) = 0),
            n_deleted = n_deleted - ((old.flags & 8) != 0),
            n_deleted_octets = n_deleted_octets - CASE WHEN old.flags & 8 THEN old.size ELSE 0 END
        WHERE id = old.mailbox_id;
    END;
    CREATE TRIGGER messages_count_update AFTER UPDATE OF mailbox_id, flags, size ON messages
    WHEN old.mailbox_id != new.mailbox_id OR old.size != new.size
        OR (old.flags & 9) != (new.flags & 9)
    BEGIN
        UPDATE mailboxes SET n_messages = n_messages - 1, n_octets = n_octets - old.size,
            n_unseen = n_unseen - ((old.flags & 1) = 0),
            n_deleted = n_deleted - ((old.flags & 8) != 0),
            n_deleted_octets = n_deleted_octets - CASE WHEN old.flags & 8 THEN old.size ELSE 0 END
        WHERE id = old.mailbox_id;
        UPDATE mailboxes SET n_messages = n_messages + 1, n_octets = n_octets + new.size,
            n_unseen = n_unseen + ((new.flags & 1) = 0),
            n_deleted = n_deleted + ((new.flags & 8) != 0),
            n_deleted_octets = n_deleted_octets + CASE WHEN new.flags & 8 THEN new.size ELSE 0 END
        WHERE id = new.mailbox_id;
    END
    """,
    # 14: each message's sort date, SORT DATE's key (RFC 5256: the Date: header's time, else
    # the internal date), written with the message row by every path that inserts one and
    # filled here for the messages there are, indexed so that a first page by date reads one
    # page of index entries (docs/decisions/webmail-first-page.md). A content's sent date
    # never changes, so the copy in the message row stays right
    """
    ALTER TABLE messages ADD COLUMN sort_date REAL;
    UPDATE messages SET sort_date = coalesce(
        (SELECT sent_date FROM blobs WHERE blobs.id = messages.blob), internal_date);
    CREATE INDEX messages_sort_date ON messages (mailbox_id, sort_date, uid)
    """,
    # 15: URLAUTH mailbox access keys (RFC 4467 §2.2; docs/imap.md): each account's secret for
    # each mailbox it made authorized URLs of (its own, or one shared with it); RESETKEY
    # replaces or removes them, and they go with the account or the mailbox
    """
    CREATE TABLE mailbox_keys (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        key BLOB NOT NULL,
        PRIMARY KEY (account_id, mailbox_id)
    );
    CREATE INDEX mailbox_keys_mailbox ON mailbox_keys (mailbox_id)
    """,
)


def _statements(script: str) -> list[str]:
    """The statements of *script*: split at each ";" that ends one (a trigger's body holds
    several, ended by its END)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending)
    return statements


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks; returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the store's schema version {version} is newer than this pobox ({len(MIGRATIONS)})"
        )
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-check under the write lock: another process may have migrated meanwhile
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > number:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
