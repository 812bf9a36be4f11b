"""An index for the fleet statistics: crash (source, kind).

Crashes by source and by kind (``kcrash triage stats``, the dashboard's ``/stats``) then read this
index instead of every crash row with its report text (measured on the 100,000-crash synthetic fleet:
bench/bench_fleet_dashboard.py).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_crash_source_kind", "crash", ["source", "kind"])


def downgrade() -> None:
    op.drop_index("ix_crash_source_kind", table_name="crash")
