// checkpoint: a flush is a single data-modifying statement: the INSERT ... ON
// CONFLICT DO NOTHING RETURNING status tells exactly which items were new, and
// the UPDATE of the batches row adds only those, so the counters can never
// disagree with batch_items however often a flush is replayed.
#include "store/checkpoint.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char open_insert_sql[] = "INSERT INTO batches (id, tenant, total)"
                                      " VALUES ($1, $2, $3::bigint)"
                                      " ON CONFLICT (tenant, id) DO NOTHING";

// One statement, one snapshot: the batch row (idx -1) and its terminal items.
static const char open_load_sql[] = "SELECT -1, status, total, succeeded, failed, skipped, cursor"
                                    " FROM batches WHERE id = $1 AND tenant = $2"
                                    " UNION ALL"
                                    " SELECT idx, status, NULL, NULL, NULL, NULL, NULL"
                                    " FROM batch_items WHERE batch_id = $1 AND tenant = $2";

static const char flush_sql[] =
    "WITH ins AS ("
    " INSERT INTO batch_items (tenant, batch_id, idx, status, attempts, last_http_status,"
    " last_error)"
    " SELECT $9, $1, u.idx, u.status, u.attempts, NULLIF(u.http_status, 0), NULLIF(u.error, '')"
    " FROM unnest($2::integer[], $3::text[], $4::integer[], $5::integer[], $6::text[])"
    "  AS u(idx, status, attempts, http_status, error)"
    " ON CONFLICT (tenant, batch_id, idx) DO NOTHING"
    " RETURNING status)"
    " UPDATE batches SET"
    " succeeded = succeeded + (SELECT count(*) FROM ins WHERE status = 'succeeded'),"
    " failed = failed + (SELECT count(*) FROM ins WHERE status = 'failed'),"
    " skipped = skipped + (SELECT count(*) FROM ins WHERE status = 'skipped'),"
    " cursor = GREATEST(cursor, $7::bigint),"
    " status = COALESCE($8, status),"
    " updated_at = now()"
    " WHERE id = $1 AND tenant = $9"
    " RETURNING id";

// clang-format off
static const char show_batch_sql[] =
    "SELECT id, tenant, status, total, succeeded, failed, skipped, cursor,"
    " " HK_PG_RFC3339("created_at") ", " HK_PG_RFC3339("updated_at")
    " FROM batches WHERE id = $1 AND tenant = $2";

static const char show_failed_sql[] =
    "SELECT idx, attempts, last_http_status, last_error, " HK_PG_RFC3339("updated_at")
    " FROM batch_items WHERE batch_id = $1 AND tenant = $2 AND status = 'failed'"
    " ORDER BY idx LIMIT $3::bigint";
// clang-format on

const char *hk_item_status_name(hk_item_status_t s)
{
    switch (s) {
    case HK_ITEM_SUCCEEDED:
        return "succeeded";
    case HK_ITEM_FAILED:
        return "failed";
    case HK_ITEM_SKIPPED:
        return "skipped";
    }
    return "unknown";
}

static hk_item_status_t status_parse(const char *s)
{
    if (strcmp(s, "succeeded") == 0)
        return HK_ITEM_SUCCEEDED;
    if (strcmp(s, "failed") == 0)
        return HK_ITEM_FAILED;
    if (strcmp(s, "skipped") == 0)
        return HK_ITEM_SKIPPED;
    return 0;
}

void hk_ckpt_batch_free(hk_ckpt_batch_t *b)
{
    if (b == NULL)
        return;
    free(b->terminal);
    free(b->item_status);
    b->terminal = NULL;
    b->item_status = NULL;
}

// Fills `out` from the rows of open_load_sql.
static int load(const PGresult *r, const char *tenant, const char *batch_id, int64_t total,
                hk_ckpt_batch_t *out, char *err, size_t err_size)
{
    int head = -1;
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), "-1") == 0) {
            head = i;
            break;
        }
    }
    if (head < 0) {
        // Only when someone deleted it between the insert and the load.
        snprintf(err, err_size, "batch %s of tenant %s not found", batch_id, tenant);
        return -1;
    }
    int64_t stored = strtoll(PQgetvalue(r, head, 2), NULL, 10);
    if (stored != total) {
        snprintf(err, err_size,
                 "batch %s has %" PRId64 " items in the store, this job has %" PRId64, batch_id,
                 stored, total);
        return -1;
    }
    snprintf(out->status, sizeof(out->status), "%s", PQgetvalue(r, head, 1));
    out->total = total;
    out->succeeded = strtoll(PQgetvalue(r, head, 3), NULL, 10);
    out->failed = strtoll(PQgetvalue(r, head, 4), NULL, 10);
    out->skipped = strtoll(PQgetvalue(r, head, 5), NULL, 10);
    out->cursor = strtoll(PQgetvalue(r, head, 6), NULL, 10);

    out->terminal = calloc((size_t)(total + 7) / 8 + 1, 1);
    out->item_status = calloc((size_t)total + 1, 1);
    if (out->terminal == NULL || out->item_status == NULL) {
        hk_ckpt_batch_free(out);
        snprintf(err, err_size, "out of memory for a batch of %" PRId64 " items", total);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        if (i == head)
            continue;
        long long idx = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        hk_item_status_t st = status_parse(PQgetvalue(r, i, 1));
        if (idx < 0 || idx >= total || st == 0) {
            hk_ckpt_batch_free(out);
            snprintf(err, err_size, "batch %s: stored item %lld (%s) is outside the batch",
                     batch_id, idx, PQgetvalue(r, i, 1));
            return -1;
        }
        out->terminal[idx >> 3] |= (uint8_t)(1u << (idx & 7));
        out->item_status[idx] = (uint8_t)st;
    }
    return 0;
}

int hk_ckpt_open(hk_pg_t *pg, const char *batch_id, const char *tenant, int64_t total,
                 hk_ckpt_batch_t *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    if (!tenant)
        tenant = "default";
    if (total < 0 || total > (int64_t)INT32_MAX + 1) {
        snprintf(err, err_size, "batch %s: %" PRId64 " items is outside 0..2147483648", batch_id,
                 total);
        return -1;
    }
    char total_s[24];
    snprintf(total_s, sizeof(total_s), "%" PRId64, total);
    char *tofree_id, *tofree_tenant;
    const char *id = hk_pg_utf8(batch_id, &tofree_id);
    const char *params[] = {id, hk_pg_utf8(tenant, &tofree_tenant), total_s};

    int rc = -1;
    PGresult *r = hk_pg_exec(pg, "hk_ckpt_open_insert", open_insert_sql, 3, params, err, err_size);
    if (r) {
        PQclear(r);
        r = hk_pg_exec(pg, "hk_ckpt_open_load", open_load_sql, 2, params, err, err_size);
        if (r) {
            rc = load(r, tenant, batch_id, total, out, err, err_size);
            PQclear(r);
        }
    }
    free(tofree_id);
    free(tofree_tenant);
    return rc;
}

int hk_ckpt_flush(hk_pg_t *pg, const char *batch_id, const char *tenant,
                  const hk_ckpt_item_t *items, size_t n, int64_t cursor, const char *status,
                  char *err, size_t err_size)
{
    if (!tenant)
        tenant = "default";
    for (size_t i = 0; i < n; i++) {
        if (items[i].idx < 0 || items[i].status < HK_ITEM_SUCCEEDED ||
            items[i].status > HK_ITEM_SKIPPED) {
            snprintf(err, err_size, "batch %s: item %" PRId32 " has an invalid index or status %d",
                     batch_id, items[i].idx, (int)items[i].status);
            return -1;
        }
    }
    hk_pg_array_t a_idx, a_status, a_attempts, a_http, a_error;
    hk_pg_array_init(&a_idx);
    hk_pg_array_init(&a_status);
    hk_pg_array_init(&a_attempts);
    hk_pg_array_init(&a_http);
    hk_pg_array_init(&a_error);
    for (size_t i = 0; i < n; i++) {
        hk_pg_array_int(&a_idx, items[i].idx);
        hk_pg_array_text(&a_status, hk_item_status_name(items[i].status));
        hk_pg_array_int(&a_attempts, items[i].attempts);
        hk_pg_array_int(&a_http, items[i].http_status);
        hk_pg_array_text(&a_error, items[i].error);
    }
    char cursor_s[24];
    snprintf(cursor_s, sizeof(cursor_s), "%" PRId64, cursor);
    char *tofree_id, *tofree_tenant;
    const char *params[] = {
        hk_pg_utf8(batch_id, &tofree_id),
        hk_pg_array_finish(&a_idx),
        hk_pg_array_finish(&a_status),
        hk_pg_array_finish(&a_attempts),
        hk_pg_array_finish(&a_http),
        hk_pg_array_finish(&a_error),
        cursor_s,
        status,
        hk_pg_utf8(tenant, &tofree_tenant),
    };

    int rc = -1;
    if (params[1] == NULL || params[2] == NULL || params[3] == NULL || params[4] == NULL ||
        params[5] == NULL) {
        snprintf(err, err_size, "out of memory for a checkpoint of %zu items", n);
    } else {
        char why[512];
        PGresult *r = hk_pg_exec(pg, "hk_ckpt_flush", flush_sql, 9, params, why, sizeof(why));
        if (r == NULL) {
            // With items, the foreign key fails first when the batches row is missing.
            if (strstr(why, "batch_items_batch_id_fkey"))
                snprintf(err, err_size, "batch %s of tenant %s not found", batch_id, tenant);
            else
                snprintf(err, err_size, "%s", why);
        } else {
            if (PQntuples(r) == 1)
                rc = 0;
            else
                snprintf(err, err_size, "batch %s of tenant %s not found", batch_id, tenant);
            PQclear(r);
        }
    }
    hk_pg_array_free(&a_idx);
    hk_pg_array_free(&a_status);
    hk_pg_array_free(&a_attempts);
    hk_pg_array_free(&a_http);
    hk_pg_array_free(&a_error);
    free(tofree_id);
    free(tofree_tenant);
    return rc;
}

static json_t *json_text_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static json_t *json_int_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null()
                                    : json_integer(strtoll(PQgetvalue(r, row, col), NULL, 10));
}

// Terminal share in percent with one decimal; 100.0 only when nothing is pending.
static double percent(int64_t terminal, int64_t total)
{
    if (total <= 0)
        return 100.0;
    double p = floor((double)terminal * 1000.0 / (double)total + 0.5) / 10.0;
    if (p >= 100.0 && terminal < total)
        p = 99.9;
    return p;
}

json_t *hk_ckpt_show(hk_pg_t *pg, const char *batch_id, const char *tenant, size_t max_failed,
                     char *err, size_t err_size)
{
    if (!tenant)
        tenant = "default";
    char *tofree_id, *tofree_tenant;
    char limit[24];
    // One more than shown tells whether the list was truncated.
    snprintf(limit, sizeof(limit), "%llu",
             max_failed >= (size_t)INT64_MAX ? (unsigned long long)INT64_MAX
                                             : (unsigned long long)max_failed + 1);
    const char *params[] = {hk_pg_utf8(batch_id, &tofree_id), hk_pg_utf8(tenant, &tofree_tenant),
                            limit};

    json_t *out = NULL;
    PGresult *b = hk_pg_exec(pg, "hk_ckpt_show_batch", show_batch_sql, 2, params, err, err_size);
    if (b == NULL)
        goto done;
    if (PQntuples(b) != 1) {
        snprintf(err, err_size, "batch %s of tenant %s not found", batch_id, tenant);
        PQclear(b);
        goto done;
    }
    PGresult *f = hk_pg_exec(pg, "hk_ckpt_show_failed", show_failed_sql, 3, params, err, err_size);
    if (f == NULL) {
        PQclear(b);
        goto done;
    }

    int64_t total = strtoll(PQgetvalue(b, 0, 3), NULL, 10);
    int64_t succeeded = strtoll(PQgetvalue(b, 0, 4), NULL, 10);
    int64_t failed = strtoll(PQgetvalue(b, 0, 5), NULL, 10);
    int64_t skipped = strtoll(PQgetvalue(b, 0, 6), NULL, 10);
    int64_t terminal = succeeded + failed + skipped;

    json_t *items = json_array();
    int rows = PQntuples(f);
    for (int i = 0; i < rows && (size_t)i < max_failed; i++) {
        json_t *it = json_object();
        json_object_set_new(it, "index", json_int_or_null(f, i, 0));
        json_object_set_new(it, "attempts", json_int_or_null(f, i, 1));
        json_object_set_new(it, "http_status", json_int_or_null(f, i, 2));
        json_object_set_new(it, "error", json_text_or_null(f, i, 3));
        json_object_set_new(it, "updated_at", json_text_or_null(f, i, 4));
        json_array_append_new(items, it);
    }

    out = json_object();
    json_object_set_new(out, "id", json_string(PQgetvalue(b, 0, 0)));
    json_object_set_new(out, "tenant", json_string(PQgetvalue(b, 0, 1)));
    json_object_set_new(out, "status", json_string(PQgetvalue(b, 0, 2)));
    json_object_set_new(out, "total", json_integer(total));
    json_object_set_new(out, "succeeded", json_integer(succeeded));
    json_object_set_new(out, "failed", json_integer(failed));
    json_object_set_new(out, "skipped", json_integer(skipped));
    json_object_set_new(out, "pending", json_integer(total > terminal ? total - terminal : 0));
    json_object_set_new(out, "cursor", json_int_or_null(b, 0, 7));
    json_object_set_new(out, "percent", json_real(percent(terminal, total)));
    json_object_set_new(out, "created_at", json_string(PQgetvalue(b, 0, 8)));
    json_object_set_new(out, "updated_at", json_string(PQgetvalue(b, 0, 9)));
    json_object_set_new(out, "failed_items", items);
    json_object_set_new(out, "failed_items_truncated", json_boolean((size_t)rows > max_failed));
    PQclear(f);
    PQclear(b);
done:
    free(tofree_id);
    free(tofree_tenant);
    return out;
}
