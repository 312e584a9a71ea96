// batchplan: the decisions of one batch run, on plain values (worker/batch.c
// carries them out): which items are terminal and how, the cursor, when the
// failure ratio aborts the batch, and the status it ends with. No clock, no I/O,
// no metrics: tests/check_batch.c drives it directly.
//
// Not thread-safe: the batch runner's thread owns each plan.
#ifndef HK_BATCHPLAN_H
#define HK_BATCHPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "store/checkpoint.h"

typedef struct hk_batchplan_s hk_batchplan_t;

// A plan for `items` items, none terminal. The batch aborts once more than
// `max_failure_ratio` × items items have failed (no minimum count: with 0, the
// first failure aborts; with 1, nothing does). NULL on ENOMEM.
hk_batchplan_t *hk_batchplan_new(size_t items, double max_failure_ratio);
void hk_batchplan_destroy(hk_batchplan_t *p);

// Resumes from a checkpoint: per-item statuses (`items` bytes, hk_item_status_t
// or 0 for not terminal), the stored counters, and whether the batch was stored
// as aborted. The counters are taken as stored, not recounted: they are what the
// next checkpoint adds to. The cursor moves past the terminal prefix.
void hk_batchplan_resume(hk_batchplan_t *p, const uint8_t *status, int64_t succeeded,
                         int64_t failed, int64_t skipped, int aborted);

typedef enum hk_batchplan_rec {
    HK_BATCHPLAN_IGNORED = -1, // index out of range or terminal already: nothing changed
    HK_BATCHPLAN_RECORDED = 0,
    // Recorded, and this failure took the failed count past max_failure_ratio ×
    // items: the plan is aborting from now on. Returned once per plan, and only
    // for a failure (a stored count over the ratio aborts nothing by itself).
    HK_BATCHPLAN_ABORT = 1,
} hk_batchplan_rec_t;

// Item `idx` became terminal with `st`. Counts it and moves the cursor past every
// terminal item that now follows it, whatever order items finished in.
hk_batchplan_rec_t hk_batchplan_record(hk_batchplan_t *p, size_t idx, hk_item_status_t st);

// Item `idx`'s status: 0 while not terminal (or out of range).
int hk_batchplan_status(const hk_batchplan_t *p, size_t idx);

typedef struct hk_batchplan_counts {
    int64_t items;
    int64_t succeeded, failed, skipped; // terminal items, stored and recorded since
    int64_t terminal;                   // their sum
    int64_t cursor;                     // items [0, cursor) are all terminal
} hk_batchplan_counts_t;
hk_batchplan_counts_t hk_batchplan_counts(const hk_batchplan_t *p);

// The failure ratio was passed (or the batch was stored as aborted): send nothing more.
int hk_batchplan_aborting(const hk_batchplan_t *p);

// Every item is terminal.
int hk_batchplan_complete(const hk_batchplan_t *p);

// The status a finished batch is stored with: "aborted" when aborting, else
// "completed_with_failures" when any item failed, else "completed".
const char *hk_batchplan_final_status(const hk_batchplan_t *p);

#endif
