"""
kcrash.fleet.buckets
====================

Grouping crashes into buckets, the write side: a crash goes to the bucket of its signature
(:func:`kcrash.oops.signature.crash_signature`, the same for a console log and a vmcore of one bug),
created on first sight; a new bucket sharing a title or alternative title with an existing one is merged
into it (``how='title'``, as syzbot matches a crash to a bug by any of its titles); people merge and
unmerge by hand (:func:`merge_buckets`, :func:`unmerge_bucket`), every merge is recorded and an undone
title merge is never redone. A bucket's ``crash_count``/``first_seen``/``last_seen`` count its own
crashes; a group's are summed by :mod:`kcrash.fleet.queries`. The rules are versioned
(:data:`GROUPING_VERSION`, rows of ``grouping_config`` made by migrations): a new signature scheme is a
new version and a migration, never a silent reshuffle. A group whose crashes blame many unrelated
functions is flagged ``assorted``. :func:`mark_fixed` records the release a fix landed in; the bucket
regresses only when a crash is seen on that release or a later one (:func:`parse_release` orders
releases), not when an old release keeps crashing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import select

from kcrash.errors import BucketNotFoundError, FleetDbError, FleetError
from kcrash.fleet.models import Bucket, BucketMerge, BucketTitle, Crash, GroupingConfig
from kcrash.oops.signature import SIGNATURE_VERSION
from kcrash.oops.title import frame_from_title

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from kcrash.fleet.extract import CrashRecord

__all__ = [
    "ASSORTED_MIN_FRAMES",
    "GROUPING_SIGNATURES",
    "GROUPING_VERSION",
    "Grouper",
    "KernelRelease",
    "check_grouping",
    "effective_bucket",
    "mark_fixed",
    "merge_buckets",
    "parse_release",
    "refresh_group",
    "release_at_least",
    "unmerge_bucket",
]

#: The grouping rules this code applies; ``grouping_config`` has a row for it (migration 0001).
GROUPING_VERSION: Final = 1
#: The oops signature scheme of each grouping version (a new scheme needs a new version).
GROUPING_SIGNATURES: Final = {1: "kc1"}
#: A group whose crashes name at least this many distinct guilty functions is flagged assorted.
ASSORTED_MIN_FRAMES: Final = 3

_RELEASE: Final = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?(?:-(\d+)(?=$|[-.+~_]))?")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# --- kernel releases -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class KernelRelease:
    """A kernel release as an ordered value: ``major.minor.patch``, then release candidates before the
    final release, then the distribution ABI number."""

    major: int
    minor: int
    patch: int
    final: int
    rc: int
    abi: int


def parse_release(release: str) -> KernelRelease | None:
    """The orderable version of a ``uname -r`` string, ``None`` when it does not start with one.

    Upstream and Debian releases (``6.12.120``, ``6.12.118+deb12-amd64``, ``7.2.13+deb14``) compare by
    ``major.minor.patch``; the ``+debN``/flavour suffix is ignored. Debian's ABI names (``6.1.0-56-amd64``,
    ``5.10.0-46-amd64``; Ubuntu's ``5.15.0-91-generic`` alike) carry no upstream patch level: ``6.1.0-56`` is
    compared by its ABI number 56 after ``6.1.0`` (so ``6.1.0-56`` < ``6.1.0-57``, but also < ``6.1.1``:
    compare ABI names with ABI names). ``-rcN`` comes before the final release.

    >>> parse_release("6.12.118+deb12-amd64") < parse_release("6.12.120")
    True
    >>> parse_release("6.1.0-56-amd64") < parse_release("6.1.0-57-amd64")
    True
    """
    match = _RELEASE.match(release.strip())
    if match is None:
        return None
    major, minor, patch, rc, abi = match.groups()
    return KernelRelease(int(major), int(minor), int(patch or 0), 0 if rc else 1, int(rc or 0), int(abi or 0))


def release_at_least(release: str, fixed: str) -> bool:
    """Whether ``release`` is ``fixed`` or later (``False`` when either cannot be parsed: no false
    regressions from releases nobody can order)."""
    have, want = parse_release(release), parse_release(fixed)
    return have is not None and want is not None and have >= want


# --- bucket graph ----------------------------------------------------------------------------------


def effective_bucket(session: Session, bucket: Bucket) -> Bucket:
    """``bucket`` followed through ``merged_into_id`` to the bucket merged into none."""
    seen = {bucket.id}
    while bucket.merged_into_id is not None and bucket.merged_into_id not in seen:
        parent = session.get(Bucket, bucket.merged_into_id)
        if parent is None:
            break
        seen.add(parent.id)
        bucket = parent
    return bucket


def _bucket(session: Session, bucket_id: int) -> Bucket:
    bucket = session.get(Bucket, bucket_id)
    if bucket is None:
        raise BucketNotFoundError(f"no bucket {bucket_id}")
    return bucket


def _children(session: Session) -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    rows = select(Bucket.id, Bucket.merged_into_id).where(Bucket.merged_into_id.is_not(None))
    for bucket_id, parent in session.execute(rows):
        if parent is not None:
            children[parent].append(bucket_id)
    return children


def _members(root: Bucket, children: dict[int, list[int]]) -> list[int]:
    # Every bucket whose effective bucket is root (root included).
    members: list[int] = []
    todo = [root.id]
    while todo:
        bucket_id = todo.pop()
        if bucket_id not in members:
            members.append(bucket_id)
            todo.extend(children[bucket_id])
    return members


def refresh_group(session: Session, root: Bucket, children: dict[int, list[int]] | None = None) -> None:
    """Recompute ``root``'s ``assorted`` flag and its regression status from its group's crashes."""
    members = _members(root, _children(session) if children is None else children)
    frames = session.scalars(
        select(Crash.guilty_frame).where(Crash.bucket_id.in_(members), Crash.guilty_frame != "").distinct()
    ).all()
    root.assorted = len(frames) >= ASSORTED_MIN_FRAMES
    if root.fixed_in_release is not None and root.status == "fixed":
        releases = session.scalars(select(Crash.kernel_release).where(Crash.bucket_id.in_(members)).distinct())
        if any(release_at_least(r, root.fixed_in_release) for r in releases):
            root.status = "regressed"


def merge_buckets(
    session: Session, source_id: int, target_id: int, *, how: str = "manual", when: dt.datetime | None = None
) -> BucketMerge:
    """Merge the group of bucket ``source_id`` into the group of ``target_id`` (their effective buckets)
    and record it. Raises :class:`FleetError` when they are already one group."""
    source = effective_bucket(session, _bucket(session, source_id))
    target = effective_bucket(session, _bucket(session, target_id))
    if source.id == target.id:
        raise FleetError(f"buckets {source_id} and {target_id} are already one bucket ({target.id})")
    source.merged_into_id = target.id
    merge = BucketMerge(source_bucket_id=source.id, target_bucket_id=target.id, created_at=when or _now(), how=how)
    session.add(merge)
    session.flush()
    refresh_group(session, target)
    return merge


def unmerge_bucket(session: Session, bucket_id: int, *, when: dt.datetime | None = None) -> BucketMerge:
    """Take bucket ``bucket_id`` (with the buckets merged into it) out of the bucket it was merged into;
    the merge is marked undone, and a title merge of the pair is not redone by later ingests."""
    bucket = _bucket(session, bucket_id)
    parent_id = bucket.merged_into_id
    if parent_id is None:
        raise FleetError(f"bucket {bucket_id} is not merged into another")
    merge = session.scalars(
        select(BucketMerge)
        .where(BucketMerge.source_bucket_id == bucket.id, BucketMerge.target_bucket_id == parent_id)
        .where(BucketMerge.undone_at.is_(None))
        .order_by(BucketMerge.id.desc())
    ).first()
    if merge is None:  # merged outside kcrash: record the undo anyway
        merge = BucketMerge(
            source_bucket_id=bucket.id, target_bucket_id=parent_id, created_at=when or _now(), how="manual"
        )
        session.add(merge)
    merge.undone_at = when or _now()
    bucket.merged_into_id = None
    session.flush()
    refresh_group(session, bucket)
    refresh_group(session, effective_bucket(session, _bucket(session, parent_id)))
    return merge


def mark_fixed(session: Session, bucket_id: int, release: str) -> Bucket:
    """Record that the bug of bucket ``bucket_id`` (its effective bucket) is fixed in kernel ``release``.
    The bucket is ``fixed``, or ``regressed`` at once if it already has a crash on ``release`` or later."""
    if parse_release(release) is None:
        raise FleetError(f"not a kernel release: {release!r} (expected e.g. 6.12.120 or 6.1.0-57-amd64)")
    root = effective_bucket(session, _bucket(session, bucket_id))
    root.fixed_in_release = release
    root.status = "fixed"
    session.flush()
    refresh_group(session, root)
    return root


# --- ingest ----------------------------------------------------------------------------------------


def check_grouping(session: Session) -> int:
    """The grouping version new buckets get; raises :class:`FleetDbError` when the database lacks it
    (created by a newer or older kcrash: upgrade with ``open_db``) or the signature scheme moved on."""
    if GROUPING_SIGNATURES.get(GROUPING_VERSION) != SIGNATURE_VERSION:
        raise FleetDbError(f"signature scheme {SIGNATURE_VERSION} has no grouping version: add one (and a migration)")
    if session.get(GroupingConfig, GROUPING_VERSION) is None:
        raise FleetDbError(f"the crash database lacks grouping version {GROUPING_VERSION}: upgrade it")
    return GROUPING_VERSION


class Grouper:
    """Puts records into buckets within one session (opened with ``autoflush=False``). Buckets, their
    titles and the undone merges are loaded once and kept in memory; the caller adds the crash rows,
    calls :meth:`flush` (new buckets get their ids) and :meth:`finish` (the touched groups' ``assorted``
    flags) and commits."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.version = check_grouping(session)
        self.created = 0
        self._by_signature = {b.signature: b for b in session.scalars(select(Bucket))}
        self._by_title: dict[str, Bucket] = {}
        self._titles_of: dict[Bucket, set[str]] = defaultdict(set)
        titles = select(BucketTitle.bucket_id, BucketTitle.title).order_by(BucketTitle.id)
        for bucket_id, title in session.execute(titles):
            bucket = session.get_one(Bucket, bucket_id)
            self._by_title.setdefault(title, bucket)
            self._titles_of[bucket].add(title)
        undone = select(BucketMerge.source_bucket_id, BucketMerge.target_bucket_id).where(
            BucketMerge.undone_at.is_not(None)
        )
        self._undone = {(a, b) for a, b in session.execute(undone)}
        self._touched: list[Bucket] = []

    def bucket_for(self, record: CrashRecord) -> Bucket:
        """The bucket of ``record`` (created and title-merged on first sight), its counters updated."""
        bucket = self._by_signature.get(record.signature)
        if bucket is None:
            bucket = self._create(record)
        else:
            self._add_titles(bucket, record)
        bucket.crash_count += 1
        bucket.first_seen = min(bucket.first_seen, record.crash_time)
        bucket.last_seen = max(bucket.last_seen, record.crash_time)
        root = effective_bucket(self.session, bucket)
        fixed = root.fixed_in_release
        if root.status == "fixed" and fixed is not None and release_at_least(record.kernel_release, fixed):
            root.status = "regressed"
        self._touched.append(bucket)
        return bucket

    def _create(self, record: CrashRecord) -> Bucket:
        bucket = Bucket(
            signature=record.signature,
            title=record.title,
            kind=record.kind,
            grouping_version=self.version,
            status="open",
            assorted=False,
            first_seen=record.crash_time,
            last_seen=record.crash_time,
            crash_count=0,
        )
        self.session.add(bucket)
        self._by_signature[record.signature] = bucket
        self.created += 1
        target = self._title_target(record)
        self._add_titles(bucket, record)
        if target is not None:
            self.session.flush()
            merge_buckets(self.session, bucket.id, target.id, how="title", when=record.crash_time)
        return bucket

    def _titles(self, record: CrashRecord) -> list[str]:
        return [t for t in dict.fromkeys((record.title, *record.alt_titles)) if t]

    def _title_target(self, record: CrashRecord) -> Bucket | None:
        # The effective bucket of the first bucket sharing a title that names a function: generic titles
        # ("kernel panic: Fatal exception", "lost connection to test machine") would gather unrelated
        # crashes that the signature's stack functions keep apart.
        for title in self._titles(record):
            other = self._by_title.get(title)
            if other is not None and frame_from_title(title):
                target = effective_bucket(self.session, other)
                if (other.id, target.id) not in self._undone:
                    return target
        return None

    def _add_titles(self, bucket: Bucket, record: CrashRecord) -> None:
        known = self._titles_of[bucket]
        for title in self._titles(record):
            if title not in known:
                known.add(title)
                bucket.titles.append(BucketTitle(title=title))
                self._by_title.setdefault(title, bucket)

    def flush(self) -> None:
        """Write new buckets and titles (crash rows can then name their ``bucket.id``)."""
        self.session.flush()

    def finish(self) -> None:
        """Refresh the ``assorted`` flag of the groups touched since the last call (one query)."""
        self.session.flush()
        if not self._touched:
            return
        children = _children(self.session)
        roots = {effective_bucket(self.session, b).id: effective_bucket(self.session, b) for b in self._touched}
        member_of = {m: root_id for root_id, root in roots.items() for m in _members(root, children)}
        frames: dict[int, set[str]] = defaultdict(set)
        ids = sorted(member_of)
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            rows = select(Crash.bucket_id, Crash.guilty_frame).where(Crash.bucket_id.in_(chunk)).distinct()
            for bucket_id, frame in self.session.execute(rows):
                if frame:
                    frames[member_of[bucket_id]].add(frame)
        for root_id, root in roots.items():
            root.assorted = len(frames[root_id]) >= ASSORTED_MIN_FRAMES
        self._touched.clear()
