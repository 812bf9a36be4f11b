"""The first crash-database schema: grouping_config, bucket, bucket_title, bucket_merge, crash.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _grouping_config() -> None:
    table = op.create_table(
        "grouping_config",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_grouping_config"),
    )
    op.bulk_insert(
        table,
        [
            {
                "version": 1,
                "description": "bucket = oops signature kc1 (normalised syzkaller title, plus up to 3 key "
                "call-trace functions when the title names none); buckets sharing a title or alt title merged",
                "created_at": dt.datetime(2026, 12, 7),
            }
        ],
    )


def _bucket() -> None:
    op.create_table(
        "bucket",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("grouping_version", sa.Integer(), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("fixed_in_release", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assorted", sa.Boolean(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("crash_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grouping_version"], ["grouping_config.version"], name="fk_bucket_grouping_version_grouping_config"
        ),
        sa.ForeignKeyConstraint(["merged_into_id"], ["bucket.id"], name="fk_bucket_merged_into_id_bucket"),
        sa.PrimaryKeyConstraint("id", name="pk_bucket"),
        sa.UniqueConstraint("signature", name="uq_bucket_signature"),
    )
    op.create_index("ix_bucket_merged_into_id", "bucket", ["merged_into_id"])


def _bucket_title() -> None:
    op.create_table(
        "bucket_title",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["bucket.id"], name="fk_bucket_title_bucket_id_bucket"),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_title"),
        sa.UniqueConstraint("bucket_id", "title", name="uq_bucket_title_bucket_id_title"),
    )
    op.create_index("ix_bucket_title_bucket_id", "bucket_title", ["bucket_id"])
    op.create_index("ix_bucket_title_title", "bucket_title", ["title"])


def _bucket_merge() -> None:
    op.create_table(
        "bucket_merge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_bucket_id", sa.Integer(), nullable=False),
        sa.Column("target_bucket_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("how", sa.String(16), nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["source_bucket_id"], ["bucket.id"], name="fk_bucket_merge_source_bucket_id_bucket"),
        sa.ForeignKeyConstraint(["target_bucket_id"], ["bucket.id"], name="fk_bucket_merge_target_bucket_id_bucket"),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_merge"),
    )
    op.create_index("ix_bucket_merge_source_bucket_id", "bucket_merge", ["source_bucket_id"])
    op.create_index("ix_bucket_merge_target_bucket_id", "bucket_merge", ["target_bucket_id"])


def _crash() -> None:
    op.create_table(
        "crash",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("kernel_release", sa.String(128), nullable=False),
        sa.Column("build_id", sa.String(128), nullable=False),
        sa.Column("arch", sa.String(32), nullable=False),
        sa.Column("crash_time", sa.DateTime(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("taints", sa.String(64), nullable=False),
        sa.Column("guilty_frame", sa.Text(), nullable=False),
        sa.Column("guilty_file", sa.Text(), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=True),
        sa.Column("report_html", sa.Text(), nullable=True),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["bucket.id"], name="fk_crash_bucket_id_bucket"),
        sa.PrimaryKeyConstraint("id", name="pk_crash"),
        sa.UniqueConstraint("content_hash", name="uq_crash_content_hash"),
    )
    for name, cols in (
        ("ix_crash_bucket_id", ["bucket_id"]),
        ("ix_crash_bucket_id_crash_time", ["bucket_id", "crash_time"]),
        ("ix_crash_crash_time", ["crash_time"]),
        ("ix_crash_host", ["host"]),
        ("ix_crash_kernel_release", ["kernel_release"]),
        ("ix_crash_signature", ["signature"]),
    ):
        op.create_index(name, "crash", cols)


def upgrade() -> None:
    _grouping_config()
    _bucket()
    _bucket_title()
    _bucket_merge()
    _crash()


def downgrade() -> None:
    for table in ("crash", "bucket_merge", "bucket_title", "bucket", "grouping_config"):
        op.drop_table(table)
