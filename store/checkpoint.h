// checkpoint: a batch's progress in Postgres (DESIGN §9): the batches row
// (counters, cursor, status) and one batch_items row per item that reached a
// terminal state. An item terminal once stays as first recorded, and counters
// only ever count rows actually inserted, so replaying a flush after a crash or
// a rebalance never double-counts. The batch runner opens a batch (resuming from
// what is stored), flushes every batch.checkpoint_items items or
// batch.checkpoint_ms, and the admin API / hookctl read it back with show().
//
// Threads: as store/pg.h (one hk_pg_t per thread at a time).
#ifndef HK_CHECKPOINT_H
#define HK_CHECKPOINT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/pg.h"

typedef enum hk_item_status {
    HK_ITEM_SUCCEEDED = 1,
    HK_ITEM_FAILED = 2,
    HK_ITEM_SKIPPED = 3,
} hk_item_status_t;

// "succeeded", "failed", "skipped"; "unknown" for anything else.
const char *hk_item_status_name(hk_item_status_t s);

typedef struct hk_ckpt_item {
    int32_t idx; // 0-based item index, < the batch's total
    hk_item_status_t status;
    int attempts;
    int http_status;   // 0 = none (stored as NULL)
    const char *error; // NULL/"" = none; invalid UTF-8 bytes are stored as '?'
} hk_ckpt_item_t;

typedef struct hk_ckpt_batch {
    char status[32]; // running, completed, completed_with_failures, aborted
    int64_t total, succeeded, failed, skipped, cursor;
    uint8_t *terminal;    // bitmap, `total` bits: bit i set = item i already terminal in the store
    uint8_t *item_status; // `total` bytes: hk_item_status_t of terminal items, 0 for others
} hk_ckpt_batch_t;

// 1 when item i is terminal in b (bit i of b->terminal).
static inline int hk_ckpt_is_terminal(const hk_ckpt_batch_t *b, int64_t i)
{
    return (b->terminal[i >> 3] >> (i & 7)) & 1;
}

// A batch is identified by (tenant, batch_id): the same id in two tenants is two
// batches. `tenant` NULL means "default".
//
// Creates the batches row if new (status running, counters 0) and loads what is
// stored: counters, cursor, status and the terminal items, all from one snapshot.
// Fails (-1, err) when the stored total differs ("batch <id> has <n> items in
// the store, this job has <m>"), when total is outside 0..2^31, or on a server
// error. 0 ok; then free *out with hk_ckpt_batch_free().
int hk_ckpt_open(hk_pg_t *pg, const char *batch_id, const char *tenant, int64_t total,
                 hk_ckpt_batch_t *out, char *err, size_t err_size);
void hk_ckpt_batch_free(hk_ckpt_batch_t *b);

// One statement, hence one transaction: inserts the n item rows with ON CONFLICT
// (tenant, batch_id, idx) DO NOTHING, adds to succeeded/failed/skipped exactly the rows
// actually inserted, sets cursor = GREATEST(cursor, cursor arg), status =
// `status` unless it is NULL, updated_at = now(). The items travel as array
// parameters, so 1000 items are one round trip. On any error nothing is written:
// -1 with the server's message ("batch <id> of tenant <tenant> not found" when
// there is no row). Called inside the caller's hk_pg_begin() it joins that
// transaction instead.
int hk_ckpt_flush(hk_pg_t *pg, const char *batch_id, const char *tenant,
                  const hk_ckpt_item_t *items, size_t n, int64_t cursor, const char *status,
                  char *err, size_t err_size);

// The batch for `hookctl batch show` and GET /v1/batches/<id>:
// {id, tenant, status, total, succeeded, failed, skipped, pending (total - the
// three), cursor, percent (terminal share, 0-100, one decimal; 100 for an empty
// batch, never 100 while items are pending), created_at, updated_at (RFC 3339
// UTC), failed_items: [{index, attempts, http_status (or null), error (or null),
// updated_at}] (at most max_failed, lowest index first), failed_items_truncated}.
// percent is a JSON real: dump with JSON_REAL_PRECISION(15) or less to print
// 33.3 rather than 33.299999999999997.
// NULL with err "batch <id> of tenant <tenant> not found" or the server's error.
// Caller json_decref()s.
json_t *hk_ckpt_show(hk_pg_t *pg, const char *batch_id, const char *tenant, size_t max_failed,
                     char *err, size_t err_size);

#endif
