"""Moving mail in and out of pobox: backups and restores (pobox's own format, docs/backup.md),
and export and import of Maildir, mbox, and live IMAP and POP3 servers."""
