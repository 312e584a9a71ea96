// offsets: a ring of (offset, finished) entries in consumption order. The head is
// the oldest unfinished offset; finished entries at the head are popped at once,
// so the ring holds exactly the uncommitted span.
#include "queue/offsets.h"

#include <stdlib.h>

typedef struct hk_offsets_entry {
    int64_t offset;
    int finished;
} hk_offsets_entry_t;

struct hk_offsets_s {
    hk_offsets_entry_t *ot_ring;
    size_t ot_cap;        // power of two
    size_t ot_head;       // index of the oldest entry
    size_t ot_cnt;        // entries in the ring
    size_t ot_unfinished; // entries not finished
    int64_t ot_last;      // last offset added, -1 if none
    int64_t ot_first;     // first offset added, -1 if none
};

hk_offsets_t *hk_offsets_new(void)
{
    hk_offsets_t *ot = calloc(1, sizeof(*ot));
    if (!ot)
        return NULL;
    ot->ot_cap = 64;
    ot->ot_ring = calloc(ot->ot_cap, sizeof(*ot->ot_ring));
    if (!ot->ot_ring) {
        free(ot);
        return NULL;
    }
    ot->ot_last = -1;
    ot->ot_first = -1;
    return ot;
}

void hk_offsets_destroy(hk_offsets_t *ot)
{
    if (!ot)
        return;
    free(ot->ot_ring);
    free(ot);
}

static hk_offsets_entry_t *at(const hk_offsets_t *ot, size_t i)
{
    return &ot->ot_ring[(ot->ot_head + i) & (ot->ot_cap - 1)];
}

static int grow(hk_offsets_t *ot)
{
    size_t cap = ot->ot_cap * 2;
    hk_offsets_entry_t *ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return -1;
    for (size_t i = 0; i < ot->ot_cnt; i++)
        ring[i] = *at(ot, i);
    free(ot->ot_ring);
    ot->ot_ring = ring;
    ot->ot_cap = cap;
    ot->ot_head = 0;
    return 0;
}

int hk_offsets_add(hk_offsets_t *ot, int64_t offset)
{
    if (offset <= ot->ot_last)
        return -1;
    if (ot->ot_cnt == ot->ot_cap && grow(ot) != 0)
        return -1;
    hk_offsets_entry_t *e = at(ot, ot->ot_cnt);
    e->offset = offset;
    e->finished = 0;
    ot->ot_cnt++;
    ot->ot_unfinished++;
    ot->ot_last = offset;
    if (ot->ot_first < 0)
        ot->ot_first = offset;
    return 0;
}

// The index of the first entry at or past offset (ot_cnt when none).
static size_t lower_bound(const hk_offsets_t *ot, int64_t offset)
{
    size_t lo = 0, hi = ot->ot_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(ot, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int hk_offsets_finish(hk_offsets_t *ot, int64_t offset)
{
    size_t lo = lower_bound(ot, offset); // entries are sorted by offset
    if (lo == ot->ot_cnt || at(ot, lo)->offset != offset || at(ot, lo)->finished)
        return -1;
    at(ot, lo)->finished = 1;
    ot->ot_unfinished--;

    while (ot->ot_cnt > 0 && at(ot, 0)->finished) {
        ot->ot_head = (ot->ot_head + 1) & (ot->ot_cap - 1);
        ot->ot_cnt--;
    }
    return 0;
}

int64_t hk_offsets_committable(const hk_offsets_t *ot)
{
    if (ot->ot_cnt > 0)
        return at(ot, 0)->offset;
    return ot->ot_last < 0 ? -1 : ot->ot_last + 1;
}

size_t hk_offsets_span(const hk_offsets_t *ot)
{
    return ot->ot_cnt;
}

size_t hk_offsets_unfinished(const hk_offsets_t *ot)
{
    return ot->ot_unfinished;
}

int hk_offsets_was_finished(const hk_offsets_t *ot, int64_t offset)
{
    if (ot->ot_first < 0 || offset < ot->ot_first || offset > ot->ot_last)
        return 0;
    if (offset < hk_offsets_committable(ot))
        return 1; // consumed here and finished: popped off the head
    size_t i = lower_bound(ot, offset);
    return i < ot->ot_cnt && at(ot, i)->offset == offset && at(ot, i)->finished;
}

int64_t hk_offsets_last(const hk_offsets_t *ot)
{
    return ot->ot_last;
}
