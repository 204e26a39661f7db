"""PostgreSQL schema and its versioned migrations.

The table ``pobox_migrations`` lists the migrations applied, one row each. A migration is never
edited once released; a change to the schema is a new entry at the end of ``MIGRATIONS``.
Migrating takes a transaction-level advisory lock, so nodes starting at once migrate one at a time
and the later ones find nothing left to do.

The layout mirrors the SQLite backend's (times are epoch seconds plus the zone offset in minutes,
system flags a bit mask, keywords a space-separated text), so ``pobox store copy`` moves rows
across unchanged. Message content lives in ``blob_chunks``: rows of at most ``CHUNK_SIZE`` bytes.
"""

from __future__ import annotations

from typing import Any

#: Bytes per row of ``blob_chunks``.
CHUNK_SIZE = 256 * 1024

#: Key of the advisory lock that serialises migrations (an arbitrary constant: "pobox mig").
MIGRATION_LOCK = 0x706F626F786D6967

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE accounts (
        id BIGSERIAL PRIMARY KEY,
        address TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE UNIQUE INDEX accounts_address ON accounts (lower(address));
    CREATE TABLE account_settings (
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (account_id, key)
    );
    CREATE TABLE aliases (
        alias TEXT NOT NULL,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
    );
    CREATE UNIQUE INDEX aliases_alias ON aliases (lower(alias));
    CREATE INDEX aliases_account ON aliases (account_id);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    CREATE TABLE mailboxes (
        id BIGSERIAL PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        uidvalidity BIGINT NOT NULL,
        uidnext BIGINT NOT NULL DEFAULT 1,
        highestmodseq BIGINT NOT NULL DEFAULT 1,
        recent_floor BIGINT NOT NULL DEFAULT 1,
        special_use TEXT,
        UNIQUE (account_id, name)
    );
    CREATE TABLE subscriptions (
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (account_id, name)
    );
    CREATE TABLE blobs (
        id BIGSERIAL PRIMARY KEY,
        size BIGINT NOT NULL,
        refs INTEGER NOT NULL DEFAULT 0,
        structure BYTEA NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        from_ TEXT NOT NULL DEFAULT '',
        to_ TEXT NOT NULL DEFAULT '',
        cc TEXT NOT NULL DEFAULT '',
        bcc TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL DEFAULT '',
        sent_date DOUBLE PRECISION
    );
    CREATE TABLE blob_chunks (
        blob BIGINT NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (blob, seq)
    );
    CREATE TABLE messages (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid BIGINT NOT NULL,
        modseq BIGINT NOT NULL,
        flags INTEGER NOT NULL DEFAULT 0,
        keywords TEXT NOT NULL DEFAULT '',
        internal_date DOUBLE PRECISION NOT NULL,
        internal_tz INTEGER NOT NULL DEFAULT 0,
        save_date DOUBLE PRECISION NOT NULL,
        size BIGINT NOT NULL,
        blob BIGINT NOT NULL REFERENCES blobs(id),
        pop3_uidl TEXT,
        pop3_hidden_at DOUBLE PRECISION,
        PRIMARY KEY (mailbox_id, uid)
    );
    CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
    CREATE INDEX messages_blob ON messages (blob);
    CREATE INDEX messages_hidden ON messages (pop3_hidden_at) WHERE pop3_hidden_at IS NOT NULL;
    CREATE TABLE expunged (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid BIGINT NOT NULL,
        modseq BIGINT NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    );
    CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
    CREATE TABLE recoverable (
        id BIGSERIAL PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        mailbox_id BIGINT,
        mailbox_name TEXT NOT NULL,
        uid BIGINT NOT NULL,
        uidl TEXT NOT NULL,
        deleted_at DOUBLE PRECISION NOT NULL,
        still_present BOOLEAN NOT NULL,
        blob BIGINT REFERENCES blobs(id),
        flags INTEGER NOT NULL DEFAULT 0,
        keywords TEXT NOT NULL DEFAULT '',
        internal_date DOUBLE PRECISION NOT NULL,
        internal_tz INTEGER NOT NULL DEFAULT 0,
        size BIGINT NOT NULL
    );
    CREATE INDEX recoverable_account ON recoverable (account_id, deleted_at);
    CREATE INDEX recoverable_mailbox ON recoverable (mailbox_id, uid);
    CREATE INDEX recoverable_blob ON recoverable (blob) WHERE blob IS NOT NULL;
    CREATE TABLE change_journal (
        seq BIGSERIAL PRIMARY KEY,
        mailbox_id BIGINT NOT NULL
    );
    """,
    # 2: renderings kept with the content (IMAP ENVELOPE, BODYSTRUCTURE), filled at append or
    # on first use
    """
    ALTER TABLE blobs ADD COLUMN envelope BYTEA, ADD COLUMN bodystructure BYTEA;
    """,
    # 3: failed-login blocks, listed and lifted by every node (docs/decisions/admin-control.md)
    """
    CREATE TABLE auth_blocks (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        failures INTEGER NOT NULL,
        until DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, key)
    );
    """,
    # 4: the outbound queue (content with the row: committed in the same transaction) and the
    # DKIM signing keys, shared by every node (docs/decisions/outbound-queue.md)
    """
    CREATE TABLE outbound (
        id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        size BIGINT NOT NULL,
        warned BOOLEAN NOT NULL DEFAULT FALSE,
        next_attempt DOUBLE PRECISION NOT NULL,
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        content BYTEA NOT NULL
    );
    CREATE INDEX outbound_due ON outbound (next_attempt);
    CREATE TABLE outbound_rcpt (
        queue_id TEXT NOT NULL REFERENCES outbound(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt DOUBLE PRECISION NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (queue_id, position)
    );
    CREATE TABLE dkim_keys (
        domain TEXT PRIMARY KEY,
        selector TEXT NOT NULL,
        private_key BYTEA NOT NULL,
        created DOUBLE PRECISION NOT NULL
    );
    """,
    # 5: the full-text index (docs/decisions/full-text-search.md): each content's folded text
    # with trigram GIN indexes (pg_trgm) for substring search, filled in the background;
    # blobs.text_state 0 = not indexed yet
    """
    CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    CREATE TABLE blob_text (
        blob BIGINT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
        header TEXT NOT NULL,
        body TEXT NOT NULL,
        subject TEXT NOT NULL,
        from_ TEXT NOT NULL,
        to_ TEXT NOT NULL,
        cc TEXT NOT NULL,
        bcc TEXT NOT NULL
    );
    DO $$
    DECLARE
        ops TEXT;  -- the operator class, wherever the extension was installed
    BEGIN
        SELECT quote_ident(n.nspname) || '.gin_trgm_ops' INTO ops
            FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'pg_trgm';
        EXECUTE format('CREATE INDEX blob_text_header ON blob_text USING gin (header %s)', ops);
        EXECUTE format('CREATE INDEX blob_text_body ON blob_text USING gin (body %s)', ops);
        EXECUTE format(
            'CREATE INDEX blob_text_fields ON blob_text USING gin'
            ' (subject %1$s, from_ %1$s, to_ %1$s, cc %1$s, bcc %1$s)', ops);
    END
    $$;
    ALTER TABLE blobs ADD COLUMN text_state SMALLINT NOT NULL DEFAULT 0;
    CREATE INDEX blobs_unindexed ON blobs (id) WHERE text_state = 0;
    """,
    # 6: app passwords (docs/app-passwords.md): more credentials for one account, each with
    # a label unique in its account
    """
    CREATE TABLE logins (
        id BIGSERIAL PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        last_used DOUBLE PRECISION,
        last_address TEXT,
        UNIQUE (account_id, label)
    )
    """,
    # 7: quota usage (docs/quota.md, docs/decisions/quota.md): one row per account, kept exact
    # in the transaction of every write; filled here from the messages there are. *warned* is
    # the last warning level (percent) delivered, low_* the lowest usage since that warning
    """
    CREATE TABLE quota_usage (
        account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
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
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
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
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        folder TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (account_id, folder, key)
    );
    CREATE INDEX messages_save_date ON messages (mailbox_id, save_date);
    CREATE INDEX messages_internal_date ON messages (mailbox_id, internal_date)
    """,
    # 10: webmail sessions (docs/decisions/webmail-sessions.md): only a SHA-256 of each session
    # id is kept; a session goes with its account, and with the app password it logged in with
    """
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        login_id BIGINT REFERENCES logins(id) ON DELETE CASCADE,
        created DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX web_sessions_login ON web_sessions (login_id);
    CREATE INDEX web_sessions_account ON web_sessions (account_id)
    """,
    # 11: IMAP METADATA annotations (RFC 5464; docs/decisions/metadata.md): mailbox_id NULL is
    # a server annotation, owner_id NULL a /shared one (else /private to that account); the
    # entry name is kept lower-case (entry names are case-insensitive); values are bytes
    """
    CREATE TABLE annotations (
        id BIGSERIAL PRIMARY KEY,
        mailbox_id BIGINT REFERENCES mailboxes(id) ON DELETE CASCADE,
        owner_id BIGINT REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value BYTEA NOT NULL
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
    # unseen, \Deleted and their octets; docs/decisions/mailbox-counters.md), kept by
    # statement triggers on messages in the transaction of every write (the writer holds the
    # mailbox row's lock already: the counters add no lock and no lock order); filled here.
    # Flag bits as pobox.store.rows: \Seen 1, \Deleted 8
    """
    ALTER TABLE mailboxes ADD COLUMN n_messages BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN n_octets BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN n_unseen BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN n_deleted BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN n_deleted_octets BIGINT NOT NULL DEFAULT 0;
    UPDATE mailboxes b SET n_messages = c.n, n_octets = c.octets, n_unseen = c.unseen,
        n_deleted = c.deleted, n_deleted_octets = c.deleted_octets
    FROM (SELECT mailbox_id, count(*) AS n, coalesce(sum(size), 0) AS octets,
            count(*) FILTER (WHERE flags & 1 = 0) AS unseen,
            count(*) FILTER (WHERE flags & 8 <> 0) AS deleted,
            coalesce(sum(size) FILTER (WHERE flags & 8 <> 0), 0) AS deleted_octets
        FROM messages GROUP BY mailbox_id) c
    WHERE c.mailbox_id = b.id;
    CREATE INDEX messages_unseen ON messages (mailbox_id, uid) WHERE flags & 1 = 0;
    CREATE FUNCTION pobox_count_messages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE mailboxes b SET n_messages = b.n_messages + d.n,
                n_octets = b.n_octets + d.octets, n_unseen = b.n_unseen + d.unseen,
                n_deleted = b.n_deleted + d.deleted,
                n_deleted_octets = b.n_deleted_octets + d.deleted_octets
            FROM (SELECT mailbox_id, count(*) AS n, sum(size) AS octets,
                    count(*) FILTER (WHERE flags & 1 = 0) AS unseen,
                    count(*) FILTER (WHERE flags & 8 <> 0) AS deleted,
                    coalesce(sum(size) FILTER (WHERE flags & 8 <> 0), 0) AS deleted_octets
                FROM new_rows GROUP BY mailbox_id) d
            WHERE b.id = d.mailbox_id;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE mailboxes b SET n_messages = b.n_messages - d.n,
                n_octets = b.n_octets - d.octets, n_unseen = b.n_unseen - d.unseen,
                n_deleted = b.n_deleted - d.deleted,
                n_deleted_octets = b.n_deleted_octets - d.deleted_octets
            FROM (SELECT mailbox_id, count(*) AS n, sum(size) AS octets,
                    count(*) FILTER (WHERE flags & 1 = 0) AS unseen,
                    count(*) FILTER (WHERE flags & 8 <> 0) AS deleted,
                    coalesce(sum(size) FILTER (WHERE flags & 8 <> 0), 0) AS deleted_octets
                FROM old_rows GROUP BY mailbox_id) d
            WHERE b.id = d.mailbox_id;
        ELSE
            -- new rows count, old rows count against: a change of flags the counters do not
            -- see (or of nothing they count) leaves the mailbox row alone
            UPDATE mailboxes b SET n_messages = b.n_messages + d.n,
                n_octets = b.n_octets + d.octets, n_unseen = b.n_unseen + d.unseen,
                n_deleted = b.n_deleted + d.deleted,
                n_deleted_octets = b.n_deleted_octets + d.deleted_octets
            FROM (SELECT mailbox_id, sum(s) AS n, sum(s * size) AS octets,
                    coalesce(sum(s) FILTER (WHERE flags & 1 = 0), 0) AS unseen,
                    coalesce(sum(s) FILTER (WHERE flags & 8 <> 0), 0) AS deleted,
                    coalesce(sum(s * size) FILTER (WHERE flags & 8 <> 0), 0) AS deleted_octets
                FROM (SELECT mailbox_id, 1 AS s, flags, size FROM new_rows
                    UNION ALL SELECT mailbox_id, -1, flags, size FROM old_rows) x
                GROUP BY mailbox_id) d
            WHERE b.id = d.mailbox_id
                AND (d.n, d.octets, d.unseen, d.deleted, d.deleted_octets) <> (0, 0, 0, 0, 0);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER messages_count_insert AFTER INSERT ON messages
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION pobox_count_messages();
    CREATE TRIGGER messages_count_delete AFTER DELETE ON messages
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION pobox_count_messages();
    CREATE TRIGGER messages_count_update AFTER UPDATE ON messages
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION pobox_count_messages()
    """,
    # 14: each message's sort date, SORT DATE's key (RFC 5256: the Date: header's time, else
    # the internal date), written with the message row by every path that inserts one and
    # filled here for the messages there are (the counters' trigger left out: no count
    # changes), indexed so that a first page by date reads one page of index entries
    # (docs/decisions/webmail-first-page.md). A content's sent date never changes
    """
    ALTER TABLE messages ADD COLUMN sort_date DOUBLE PRECISION;
    ALTER TABLE messages DISABLE TRIGGER messages_count_update;
    UPDATE messages m SET sort_date = coalesce(b.sent_date, m.internal_date)
        FROM blobs b WHERE b.id = m.blob;
    ALTER TABLE messages ENABLE TRIGGER messages_count_update;
    ALTER TABLE messages ALTER COLUMN sort_date SET NOT NULL;
    CREATE INDEX messages_sort_date ON messages (mailbox_id, sort_date, uid)
    """,
    # 15: URLAUTH mailbox access keys (RFC 4467 §2.2; docs/imap.md): each account's secret for
    # each mailbox it made authorized URLs of (its own, or one shared with it); RESETKEY
    # replaces or removes them, and they go with the account or the mailbox
    """
    CREATE TABLE mailbox_keys (
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        key BYTEA NOT NULL,
        PRIMARY KEY (account_id, mailbox_id)
    );
    CREATE INDEX mailbox_keys_mailbox ON mailbox_keys (mailbox_id)
    """,
)


async def schema_version(conn: Any) -> int:
    """The number of migrations applied (0 for an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('pobox_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM pobox_migrations"))


async def migrate(conn: Any) -> int:
    """Apply the migrations this database lacks; returns the schema version.

    *conn* is an asyncpg connection not inside a transaction.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS pobox_migrations ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version = await schema_version(conn)
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the store's schema version {version} is newer than this pobox"
                f" ({len(MIGRATIONS)}): upgrade pobox on this node"
            )
        for number in range(version, len(MIGRATIONS)):
            await conn.execute(MIGRATIONS[number])
            await conn.execute("INSERT INTO pobox_migrations (version) VALUES ($1)", number + 1)
    return len(MIGRATIONS)
