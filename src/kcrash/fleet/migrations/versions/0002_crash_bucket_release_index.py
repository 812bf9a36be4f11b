"""A covering index for the bucket page: crash (bucket_id, kernel_release, build_id, host, crash_time).

The per-release table, the host counts and the distinct-host count of one bucket then read the index
alone (measured on the 100,000-crash synthetic fleet: bench/bench_fleet_dashboard.py).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ["bucket_id", "kernel_release", "build_id", "host", "crash_time"]


def upgrade() -> None:
    op.create_index("ix_crash_bucket_id_release", "crash", _COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_crash_bucket_id_release", table_name="crash")
