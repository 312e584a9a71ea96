// dlstore: the dead_letters table (DESIGN §6, §9). Every record hookd puts on
// jobs.dlq is also inserted here when Postgres is configured, keyed by its
// original position and job id, so inserting the same record twice (a retried
// insert, a redelivered job) keeps one row. `hookctl dlq` lists them and
// replays them: the original key and value go back to the jobs topic and the
// row is marked replayed_at.
//
// Threads: as store/pg.h (one hk_pg_t per thread at a time).
#ifndef HK_DLSTORE_H
#define HK_DLSTORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/pg.h"

typedef struct hk_dls_record {
    const char *job_id; // required; for a batch item its key "<batch id>:<index>"
    const char *tenant; // NULL = "default"
    const char *topic;  // required: original position
    int32_t partition;
    int64_t offset;
    const void *key; // NULL/0 = no key
    size_t key_len;
    const void *value; // raw bytes (may not be UTF-8)
    size_t value_len;
    const char *error_class; // required (hk_outcome name: "permanent", "exhausted", ...)
    const char *error;       // NULL = ""
    int http_status;         // 0 = NULL
    int attempts;
    const char *batch_id; // NULL when not a batch item
    int32_t item_idx;     // -1 when not a batch item
} hk_dls_record_t;

// Inserts n records in ONE transaction, ON CONFLICT DO NOTHING (idempotent).
// Text fields with invalid UTF-8 are stored with '?' for the bad bytes; key and
// value are stored byte for byte. 0 ok, -1 err (nothing inserted).
int hk_dls_insert(hk_pg_t *pg, const hk_dls_record_t *recs, size_t n, char *err, size_t err_size);

// Lists dead letters newest first: [{id, job_id, tenant, error_class, error,
// http_status, attempts, original_topic, original_partition, original_offset,
// batch_id, item_idx, created_at, replayed_at}] (absent values are null; times
// RFC 3339 UTC), filtered by `reason` (NULL = all; else error_class equal to it
// or error containing it, both case-insensitive) and include_replayed (0 = only
// rows not replayed yet), at most `limit` rows (0 = no limit). Caller json_decref()s.
json_t *hk_dls_list(hk_pg_t *pg, const char *reason, int include_replayed, size_t limit, char *err,
                    size_t err_size);

// Returns 0 once the record is durably produced (acknowledged), else non-zero.
typedef int hk_dls_produce_fn(const void *key, size_t key_len, const void *value, size_t value_len,
                              void *arg);

// Replay: the rows not yet replayed (id = `id` when id > 0, else those matching
// `reason` as in hk_dls_list, else all), oldest first, locked FOR UPDATE SKIP
// LOCKED (two replays at once never produce the same row); calls produce() for
// each and marks each produced row replayed_at = now(). Commits every
// HK_DLS_REPLAY_CHUNK rows, so a crash never marks an unproduced row (a produced
// row not yet marked may be produced again: at-least-once). Returns how many
// were replayed (0 when nothing matched), -1 on error: err says why and how
// many were replayed before. A produce() failure stops the replay there: the
// rows produced before it are marked, the rest stay unreplayed.
#define HK_DLS_REPLAY_CHUNK 500
long hk_dls_replay(hk_pg_t *pg, int64_t id, const char *reason, hk_dls_produce_fn *produce,
                   void *arg, char *err, size_t err_size);

#endif
