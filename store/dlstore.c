// dlstore: key and value travel as binary bytea parameters and come back in
// binary results, so they round-trip byte for byte (NUL, 0xff, invalid UTF-8).
#include "store/dlstore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char insert_sql[] =
    "INSERT INTO dead_letters (job_id, tenant, original_topic, original_partition,"
    " original_offset, key, value, error_class, error, http_status, attempts, batch_id,"
    " item_idx)"
    " VALUES ($1, $2, $3, $4::integer, $5::bigint, $6::bytea, $7::bytea, $8, $9,"
    " $10::integer, $11::integer, $12, $13::integer)"
    " ON CONFLICT (original_topic, original_partition, original_offset, job_id) DO NOTHING";

// $1 reason (NULL = all), used by list and replay alike.
#define REASON_MATCH                                                                               \
    "($1::text IS NULL OR lower(error_class) = lower($1)"                                          \
    " OR strpos(lower(error), lower($1)) > 0)"

// clang-format off
static const char list_sql[] =
    "SELECT id, job_id, tenant, error_class, error, http_status, attempts, original_topic,"
    " original_partition, original_offset, batch_id, item_idx,"
    " " HK_PG_RFC3339("created_at") ", " HK_PG_RFC3339("replayed_at")
    " FROM dead_letters"
    " WHERE " REASON_MATCH " AND ($2::boolean OR replayed_at IS NULL)"
    " ORDER BY created_at DESC, id DESC"
    " LIMIT $3::bigint";
// clang-format on

static const char replay_select_sql[] = "SELECT id, key, value FROM dead_letters"
                                        " WHERE " REASON_MATCH " AND replayed_at IS NULL"
                                        " AND ($2::bigint IS NULL OR id = $2)"
                                        " ORDER BY id LIMIT $3::integer"
                                        " FOR UPDATE SKIP LOCKED";

static const char replay_mark_sql[] = "UPDATE dead_letters SET replayed_at = now()"
                                      " WHERE id = ANY($1::bigint[])";

static int insert_one(hk_pg_t *pg, size_t i, const hk_dls_record_t *rec, char *err, size_t err_size)
{
    if (rec->job_id == NULL || rec->topic == NULL || rec->error_class == NULL) {
        snprintf(err, err_size, "dead letter %zu: job_id, topic and error_class are required", i);
        return -1;
    }
    char part[16], off[24], http[16], attempts[16], idx[16];
    snprintf(part, sizeof(part), "%" PRId32, rec->partition);
    snprintf(off, sizeof(off), "%" PRId64, rec->offset);
    snprintf(http, sizeof(http), "%d", rec->http_status);
    snprintf(attempts, sizeof(attempts), "%d", rec->attempts);
    snprintf(idx, sizeof(idx), "%" PRId32, rec->item_idx);
    int batch_item = rec->batch_id != NULL && rec->item_idx >= 0;

    char *f[6];
    const char *values[13] = {
        hk_pg_utf8(rec->job_id, &f[0]),
        hk_pg_utf8(rec->tenant ? rec->tenant : "default", &f[1]),
        hk_pg_utf8(rec->topic, &f[2]),
        part,
        off,
        rec->key ? (rec->key_len ? rec->key : "") : NULL,
        rec->value && rec->value_len ? rec->value : "",
        hk_pg_utf8(rec->error_class, &f[3]),
        hk_pg_utf8(rec->error ? rec->error : "", &f[4]),
        rec->http_status ? http : NULL,
        attempts,
        hk_pg_utf8(rec->batch_id, &f[5]),
        batch_item ? idx : NULL,
    };
    int lengths[13] = {0};
    int formats[13] = {0};
    lengths[5] = (int)rec->key_len;
    formats[5] = 1;
    lengths[6] = (int)rec->value_len;
    formats[6] = 1;

    int rc = 0;
    if (rec->key_len > INT32_MAX || rec->value_len > INT32_MAX) {
        snprintf(err, err_size, "dead letter %zu: key or value too large", i);
        rc = -1;
    } else {
        char why[512];
        PGresult *r = hk_pg_exec_params(pg, "hk_dls_insert", insert_sql, 13, values, lengths,
                                        formats, 0, why, sizeof(why));
        if (r == NULL) {
            snprintf(err, err_size, "dead letter %zu (job %s): %s", i, rec->job_id, why);
            rc = -1;
        }
        PQclear(r);
    }
    for (int k = 0; k < 6; k++)
        free(f[k]);
    return rc;
}

int hk_dls_insert(hk_pg_t *pg, const hk_dls_record_t *recs, size_t n, char *err, size_t err_size)
{
    if (n == 0)
        return 0;
    if (n == 1) // one statement is one transaction
        return insert_one(pg, 0, &recs[0], err, err_size);
    if (hk_pg_begin(pg, err, err_size) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (insert_one(pg, i, &recs[i], err, err_size) != 0) {
            hk_pg_rollback(pg);
            return -1;
        }
    }
    return hk_pg_commit(pg, err, err_size);
}

static json_t *text_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static json_t *int_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

json_t *hk_dls_list(hk_pg_t *pg, const char *reason, int include_replayed, size_t limit, char *err,
                    size_t err_size)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%llu",
             limit > (size_t)INT64_MAX ? (unsigned long long)INT64_MAX : (unsigned long long)limit);
    char *tofree;
    const char *params[] = {hk_pg_utf8(reason, &tofree), include_replayed ? "true" : "false",
                            limit ? lim : NULL};
    PGresult *r = hk_pg_exec(pg, "hk_dls_list", list_sql, 3, params, err, err_size);
    free(tofree);
    if (r == NULL)
        return NULL;

    static const char *const names[] = {
        "id",          "job_id",   "tenant",         "error_class",        "error",
        "http_status", "attempts", "original_topic", "original_partition", "original_offset",
        "batch_id",    "item_idx", "created_at",     "replayed_at",
    };
    // Which columns are numbers.
    static const int numeric[] = {1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 0};
    json_t *out = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *row = json_object();
        for (int c = 0; c < (int)(sizeof(names) / sizeof(names[0])); c++)
            json_object_set_new(row, names[c],
                                numeric[c] ? int_or_null(r, i, c) : text_or_null(r, i, c));
        json_array_append_new(out, row);
    }
    PQclear(r);
    return out;
}

static int64_t be64(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | u[i];
    return (int64_t)v;
}

// One chunk: select, produce, mark, commit. 0 ok, -1 with err. *marked = rows
// marked replayed and committed; *more = the chunk was full (there may be more).
static int replay_chunk(hk_pg_t *pg, const char *const sel[3], hk_dls_produce_fn *produce,
                        void *arg, long *marked, int *more, char *err, size_t err_size)
{
    *marked = 0;
    *more = 0;
    if (hk_pg_begin(pg, err, err_size) != 0)
        return -1;
    PGresult *r = hk_pg_exec_params(pg, "hk_dls_replay_select", replay_select_sql, 3, sel, NULL,
                                    NULL, 1, err, err_size);
    if (r == NULL) {
        hk_pg_rollback(pg);
        return -1;
    }
    int rows = PQntuples(r);
    hk_pg_array_t ids;
    hk_pg_array_init(&ids);
    long produced = 0;
    int64_t failed_id = 0;
    for (int i = 0; i < rows; i++) {
        int64_t id = be64(PQgetvalue(r, i, 0));
        int has_key = !PQgetisnull(r, i, 1);
        if (produce(has_key ? PQgetvalue(r, i, 1) : NULL,
                    has_key ? (size_t)PQgetlength(r, i, 1) : 0, PQgetvalue(r, i, 2),
                    (size_t)PQgetlength(r, i, 2), arg) != 0) {
            failed_id = id;
            break;
        }
        hk_pg_array_int(&ids, id);
        produced++;
    }
    PQclear(r);

    int rc = 0;
    if (produced > 0) {
        const char *mark[] = {hk_pg_array_finish(&ids)};
        PGresult *m = NULL;
        if (mark[0] == NULL)
            snprintf(err, err_size, "out of memory");
        else
            m = hk_pg_exec(pg, "hk_dls_replay_mark", replay_mark_sql, 1, mark, err, err_size);
        if (m == NULL)
            rc = -1;
        PQclear(m);
    }
    hk_pg_array_free(&ids);
    if (rc != 0) {
        hk_pg_rollback(pg);
        return -1;
    }
    if (hk_pg_commit(pg, err, err_size) != 0)
        return -1;
    *marked = produced;
    if (failed_id) {
        snprintf(err, err_size, "producing dead letter %" PRId64 " failed", failed_id);
        return -1;
    }
    *more = rows == HK_DLS_REPLAY_CHUNK;
    return 0;
}

long hk_dls_replay(hk_pg_t *pg, int64_t id, const char *reason, hk_dls_produce_fn *produce,
                   void *arg, char *err, size_t err_size)
{
    char id_s[24], chunk_s[16];
    snprintf(id_s, sizeof(id_s), "%" PRId64, id);
    snprintf(chunk_s, sizeof(chunk_s), "%d", HK_DLS_REPLAY_CHUNK);
    char *tofree = NULL;
    const char *sel[3] = {id > 0 ? NULL : hk_pg_utf8(reason, &tofree), id > 0 ? id_s : NULL,
                          chunk_s};

    long total = 0;
    int more = 1;
    while (more) {
        char why[512];
        long marked;
        int rc = replay_chunk(pg, sel, produce, arg, &marked, &more, why, sizeof(why));
        total += marked;
        if (rc != 0) {
            snprintf(err, err_size, "dead letter replay stopped after %ld replayed: %s", total,
                     why);
            free(tofree);
            return -1;
        }
    }
    free(tofree);
    return total;
}
