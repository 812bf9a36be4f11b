"""
kcrash.fleet.models
===================

The crash database's tables as SQLAlchemy 2 typed ORM classes: :class:`Bucket` (one per crash signature,
possibly merged into another), :class:`Crash` (one per crash report found in a log or a dump),
:class:`BucketTitle` (a bucket's alternative titles), :class:`BucketMerge` (the merge history, with undo)
and :class:`GroupingConfig` (the versions of the grouping rules). The schema itself is created and
upgraded by the Alembic migrations in :mod:`kcrash.fleet.migrations`, never by ``create_all``; these
classes must describe the head revision. Times are naive UTC datetimes (the same on SQLite and
PostgreSQL). No queries here: ingest writes, :mod:`kcrash.fleet.queries` reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "BUCKET_STATUSES",
    "CRASH_SOURCES",
    "MERGE_HOWS",
    "Base",
    "Bucket",
    "BucketMerge",
    "BucketTitle",
    "Crash",
    "GroupingConfig",
]

#: ``crash.source`` values: where the crash was read from.
CRASH_SOURCES: Final = ("dump", "log", "dmesg", "pstore")
#: ``bucket.status`` values.
BUCKET_STATUSES: Final = ("open", "fixed", "regressed")
#: ``bucket_merge.how`` values: by a shared title/alt title, or by ``kcrash triage merge``.
MERGE_HOWS: Final = ("title", "manual")

# Constraint names fixed so that migrations can refer to them on every backend.
_NAMING: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the crash database."""

    metadata = MetaData(naming_convention=_NAMING)


class GroupingConfig(Base):
    """A version of the grouping rules (signature scheme, merge rules); buckets record the one that made them."""

    __tablename__ = "grouping_config"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Bucket(Base):
    """All crashes with one signature. ``merged_into_id`` points at the bucket that absorbed this one."""

    __tablename__ = "bucket"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signature: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(64))
    grouping_version: Mapped[int] = mapped_column(ForeignKey("grouping_config.version"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("bucket.id"), index=True)
    fixed_in_release: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="open")
    assorted: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime)
    crash_count: Mapped[int] = mapped_column(Integer, default=0)

    titles: Mapped[list[BucketTitle]] = relationship(back_populates="bucket", cascade="all, delete-orphan")


class BucketTitle(Base):
    """A title (main or alternative) seen on a bucket's crashes; title merges match on these."""

    __tablename__ = "bucket_title"
    __table_args__ = (UniqueConstraint("bucket_id", "title", name="uq_bucket_title_bucket_id_title"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("bucket.id"), index=True)
    title: Mapped[str] = mapped_column(Text, index=True)

    bucket: Mapped[Bucket] = relationship(back_populates="titles")


class BucketMerge(Base):
    """One merge of ``source`` into ``target``; ``undone_at`` is set by an unmerge."""

    __tablename__ = "bucket_merge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_bucket_id: Mapped[int] = mapped_column(ForeignKey("bucket.id"), index=True)
    target_bucket_id: Mapped[int] = mapped_column(ForeignKey("bucket.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    how: Mapped[str] = mapped_column(String(16))
    undone_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Crash(Base):
    """One crash report. ``content_hash`` deduplicates: a dump's file hash, a log report's text hash."""

    __tablename__ = "crash"
    __table_args__ = (
        Index("ix_crash_bucket_id_crash_time", "bucket_id", "crash_time"),
        Index("ix_crash_kernel_release", "kernel_release"),
        # The bucket page's per-release table and host counts read this index alone (migration 0002).
        Index("ix_crash_bucket_id_release", "bucket_id", "kernel_release", "build_id", "host", "crash_time"),
        # Crashes by source and by kind (the fleet statistics) read this index alone (migration 0003).
        Index("ix_crash_source_kind", "source", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(String(255), index=True)
    kernel_release: Mapped[str] = mapped_column(String(128))
    build_id: Mapped[str] = mapped_column(String(128))
    arch: Mapped[str] = mapped_column(String(32))
    crash_time: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    ingested_at: Mapped[dt.datetime] = mapped_column(DateTime)
    title: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    taints: Mapped[str] = mapped_column(String(64))
    guilty_frame: Mapped[str] = mapped_column(Text)
    guilty_file: Mapped[str] = mapped_column(Text)
    excerpt: Mapped[str] = mapped_column(Text)
    report_json: Mapped[str | None] = mapped_column(Text)
    report_html: Mapped[str | None] = mapped_column(Text)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("bucket.id"), index=True)
