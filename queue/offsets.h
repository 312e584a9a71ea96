// offsets: per-partition completion tracking for at-least-once commits.
//
// Jobs from one partition finish out of order across delivery threads. The tracker
// remembers every consumed offset that is not yet committable and yields the
// highest offset that may be committed: the first unfinished one (or one past the
// last consumed when all are finished). A commit never passes an unfinished job.
//
// Not thread-safe: owned by the intake thread. O(log n) finish, amortised O(1) add.
#ifndef HK_OFFSETS_H
#define HK_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct hk_offsets_s hk_offsets_t;

hk_offsets_t *hk_offsets_new(void);
void hk_offsets_destroy(hk_offsets_t *ot);

// Records a consumed offset. Offsets must increase (gaps allowed: compaction,
// transaction markers). 0 ok, -1 when not greater than the last one added.
int hk_offsets_add(hk_offsets_t *ot, int64_t offset);

// Marks a consumed offset finished. 0 ok, -1 unknown or already finished.
int hk_offsets_finish(hk_offsets_t *ot, int64_t offset);

// The offset to commit ("next to consume"), or -1 when nothing was ever added.
int64_t hk_offsets_committable(const hk_offsets_t *ot);

// Offsets consumed but not yet committable (finished ones behind an unfinished
// head included): the partition's uncommitted span.
size_t hk_offsets_span(const hk_offsets_t *ot);

// Offsets consumed and not finished.
size_t hk_offsets_unfinished(const hk_offsets_t *ot);

// 1 when `offset` was added here and finished (committed or not), 0 otherwise
// (never added, a gap, or not finished). Used to skip, when a lost partition comes
// back, what this process had already finished beyond its committable offset.
int hk_offsets_was_finished(const hk_offsets_t *ot, int64_t offset);

// The last offset added, -1 if none.
int64_t hk_offsets_last(const hk_offsets_t *ot);

#endif
