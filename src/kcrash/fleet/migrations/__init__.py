"""
kcrash.fleet.migrations
=======================

Alembic migrations of the crash database, run by :func:`kcrash.fleet.db.upgrade` (no ``alembic.ini``).
A schema or grouping change is a new revision in ``versions/``, never an edit of an old one.
"""
