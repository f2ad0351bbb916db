"""Alembic's script directory (`env.py`, `versions/`) and what revisions share:
`commit_numbers`, the PostgreSQL triggers that number and announce every commit."""
