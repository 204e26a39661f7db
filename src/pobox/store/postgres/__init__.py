"""The PostgreSQL backend: several pobox nodes on one shared store (see docs/postgresql.md)."""
