"""
kcrash.fleet
============

Fleet triage: a crash database (SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL for teams) filled
from console logs, dmesg files, pstore records and dumps (:mod:`~kcrash.fleet.extract`,
:mod:`~kcrash.fleet.ingest`), crashes grouped into buckets by signature (:mod:`~kcrash.fleet.buckets`).
The package sits beside :mod:`kcrash.lab`: it uses analysis, report and oops, and only the CLI uses it.
"""
