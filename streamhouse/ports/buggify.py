"""Buggify port: lets a simulation make chosen engine call sites misbehave on purpose.

Each call site names itself (`buggify.fires("flush.early")`) and, when the
answer is yes, takes a legal but unusual path: a flush far below its
thresholds, extra scheduling points before an fsync is acknowledged, a block
cache miss, a lease renewal left late. Every such path keeps the engine's
promises; they exist to reach rare interleavings. The composition root
hands the engine an instance: in production `Buggify()`, which never fires;
under simulation one that fires at the sites a seed chose.
"""

from __future__ import annotations

FLUSH_EARLY = "flush.early"
WAL_SLOW_SYNC_CALLBACK = "wal.slow_sync_callback"
READER_CACHE_MISS = "reader.cache_miss"
LEASE_RENEW_LATE = "lease.renew_late"
SITES = (FLUSH_EARLY, WAL_SLOW_SYNC_CALLBACK, READER_CACHE_MISS, LEASE_RENEW_LATE)
# The rewrite-and-swap step and the merger (drawn apart from SITES, so seeds drawn before
# they existed keep their sites): a swap left late after its upload (a lease move or a crash
# lands in between), a swap given up after its upload (an orphan, as a crash there leaves),
# a swap asked under the epoch before the one held (as if the lease had moved on meanwhile:
# the store refuses it), a merge of any two rows whatever their sizes
REWRITE_SLOW_SWAP = "rewrite.slow_swap"
REWRITE_GIVE_UP_AFTER_UPLOAD = "rewrite.give_up_after_upload"
REWRITE_STALE_EPOCH = "rewrite.stale_epoch"
MERGE_ANY_RUN = "merge.any_run"
MERGE_SITES = (
    REWRITE_SLOW_SWAP,
    REWRITE_GIVE_UP_AFTER_UPLOAD,
    REWRITE_STALE_EPOCH,
    MERGE_ANY_RUN,
)
# Crash points of the rewrite-and-swap step, where a simulation kills the process (its
# crash-at-step nemesis): before the upload; after it, before the swap; after the swap
# committed, before its listeners are told; after them (the released objects wait for the
# reconciler's grace); and in a compaction round, between one run's swap and the next run's
REWRITE_BEFORE_UPLOAD = "rewrite.before_upload"
REWRITE_BEFORE_SWAP = "rewrite.before_swap"
REWRITE_BEFORE_LISTENERS = "rewrite.before_listeners"
REWRITE_AFTER_LISTENERS = "rewrite.after_listeners"
COMPACTION_BETWEEN_RUNS = "compaction.between_runs"
CRASH_POINTS = (
    REWRITE_BEFORE_UPLOAD,
    REWRITE_BEFORE_SWAP,
    REWRITE_BEFORE_LISTENERS,
    REWRITE_AFTER_LISTENERS,
    COMPACTION_BETWEEN_RUNS,
)


class Buggify:
    """The disabled switch: no site ever fires."""

    def fires(self, site: str) -> bool:
        """Whether the call site `site` should misbehave this time."""
        return False

    def reached(self, point: str) -> None:
        """The engine is at crash point `point` (one of CRASH_POINTS): a simulation may kill
        the process right here, and then the call does not return. Here: nothing."""
