#include "worker/batchplan.h"

#include <stdlib.h>

struct hk_batchplan_s {
    size_t items;
    double max_failure_ratio;
    uint8_t *status; // per item: 0 not terminal, else hk_item_status_t
    int64_t succeeded, failed, skipped;
    int64_t cursor;
    int aborting;
};

hk_batchplan_t *hk_batchplan_new(size_t items, double max_failure_ratio)
{
    hk_batchplan_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (!(p->status = calloc(items ? items : 1, 1))) {
        free(p);
        return NULL;
    }
    p->items = items;
    p->max_failure_ratio = max_failure_ratio;
    return p;
}

void hk_batchplan_destroy(hk_batchplan_t *p)
{
    if (!p)
        return;
    free(p->status);
    free(p);
}

static void advance(hk_batchplan_t *p)
{
    while (p->cursor < (int64_t)p->items && p->status[p->cursor])
        p->cursor++;
}

void hk_batchplan_resume(hk_batchplan_t *p, const uint8_t *status, int64_t succeeded,
                         int64_t failed, int64_t skipped, int aborted)
{
    for (size_t i = 0; i < p->items; i++)
        p->status[i] = status[i];
    p->succeeded = succeeded;
    p->failed = failed;
    p->skipped = skipped;
    p->aborting = aborted != 0;
    p->cursor = 0;
    advance(p);
}

hk_batchplan_rec_t hk_batchplan_record(hk_batchplan_t *p, size_t idx, hk_item_status_t st)
{
    if (idx >= p->items || p->status[idx])
        return HK_BATCHPLAN_IGNORED; // each item is out once: cannot happen
    p->status[idx] = (uint8_t)st;
    if (st == HK_ITEM_SUCCEEDED)
        p->succeeded++;
    else if (st == HK_ITEM_FAILED)
        p->failed++;
    else
        p->skipped++;
    advance(p);
    if (st != HK_ITEM_FAILED || p->aborting)
        return HK_BATCHPLAN_RECORDED;
    // Strictly more than the ratio: a batch may fail exactly its allowance.
    if ((double)p->failed > p->max_failure_ratio * (double)p->items) {
        p->aborting = 1;
        return HK_BATCHPLAN_ABORT;
    }
    return HK_BATCHPLAN_RECORDED;
}

int hk_batchplan_status(const hk_batchplan_t *p, size_t idx)
{
    return idx < p->items ? p->status[idx] : 0;
}

hk_batchplan_counts_t hk_batchplan_counts(const hk_batchplan_t *p)
{
    return (hk_batchplan_counts_t){.items = (int64_t)p->items,
                                   .succeeded = p->succeeded,
                                   .failed = p->failed,
                                   .skipped = p->skipped,
                                   .terminal = p->succeeded + p->failed + p->skipped,
                                   .cursor = p->cursor};
}

int hk_batchplan_aborting(const hk_batchplan_t *p)
{
    return p->aborting;
}

int hk_batchplan_complete(const hk_batchplan_t *p)
{
    return p->succeeded + p->failed + p->skipped == (int64_t)p->items;
}

const char *hk_batchplan_final_status(const hk_batchplan_t *p)
{
    if (p->aborting)
        return "aborted";
    return p->failed ? "completed_with_failures" : "completed";
}
