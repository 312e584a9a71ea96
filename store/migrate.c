// migrate: the advisory lock is taken first thing in the transaction, before
// even CREATE TABLE IF NOT EXISTS (which is not safe against a concurrent
// creator: the loser fails on pg_type's unique index), and the applied versions
// are read after it, so a replica that waited sees what the winner recorded.
#include "store/migrate.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATE_TIMEOUT_MS (10 * 60 * 1000) // client wait for the lock and each script

static const char create_sql[] = "CREATE TABLE IF NOT EXISTS hookd_schema_migrations ("
                                 " version integer PRIMARY KEY,"
                                 " name text NOT NULL,"
                                 " checksum text NOT NULL,"
                                 " applied_at timestamptz NOT NULL DEFAULT now())";

// clang-format off
static const char status_sql[] =
    "SELECT version, name, checksum, " HK_PG_RFC3339("applied_at")
    " FROM hookd_schema_migrations ORDER BY version";
// clang-format on

void hk_migrate_checksum(const hk_migration_t *m, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    hex[0] = '\0';
    if (!EVP_Digest(m->sql, m->sql_len, md, &len, EVP_sha256(), NULL))
        return;
    for (unsigned int i = 0; i < len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static const hk_migration_t *find(int version)
{
    for (size_t i = 0; i < hk_migrations_cnt; i++) {
        if (hk_migrations[i].version == version)
            return &hk_migrations[i];
    }
    return NULL;
}

static int newest_known(void)
{
    return hk_migrations_cnt ? hk_migrations[hk_migrations_cnt - 1].version : 0;
}

// Runs a statement without parameters inside the migration transaction.
static int run(hk_pg_t *pg, const char *sql, char *err, size_t err_size)
{
    PGresult *r = hk_pg_exec_script(pg, sql, MIGRATE_TIMEOUT_MS, err, err_size);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

// Checks the recorded migrations against ours; fills done[i] for hk_migrations[i].
static int check_recorded(hk_pg_t *pg, unsigned char *done, char *err, size_t err_size)
{
    PGresult *r = hk_pg_exec_script(
        pg, "SELECT version, checksum FROM hookd_schema_migrations ORDER BY version",
        MIGRATE_TIMEOUT_MS, err, err_size);
    if (r == NULL)
        return -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        int version = atoi(PQgetvalue(r, i, 0));
        const char *sum = PQgetvalue(r, i, 1);
        const hk_migration_t *m = find(version);
        if (m == NULL) {
            snprintf(err, err_size,
                     "database has migration %d, unknown to this hookd (newest known: %d); "
                     "upgrade hookd",
                     version, newest_known());
            rc = -1;
            break;
        }
        char ours[65];
        hk_migrate_checksum(m, ours);
        if (strcmp(ours, sum) != 0) {
            snprintf(err, err_size,
                     "migration %d (%s) was changed after it was applied: checksum %s in the "
                     "database, %s in this binary",
                     version, m->name, sum, ours);
            rc = -1;
            break;
        }
        done[m - hk_migrations] = 1;
    }
    PQclear(r);
    return rc;
}

static int apply_one(hk_pg_t *pg, const hk_migration_t *m, char *err, size_t err_size)
{
    char why[512];
    if (run(pg, m->sql, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "migration %d (%s) failed: %s", m->version, m->name, why);
        return -1;
    }
    // A COMMIT or ROLLBACK inside the file would split the one transaction.
    PGconn *c = hk_pg_conn(pg);
    if (c == NULL || PQtransactionStatus(c) != PQTRANS_INTRANS) {
        snprintf(err, err_size,
                 "migration %d (%s) ended the transaction; migrations must not contain "
                 "COMMIT or ROLLBACK",
                 m->version, m->name);
        return -1;
    }
    char version[16], sum[65];
    snprintf(version, sizeof(version), "%d", m->version);
    hk_migrate_checksum(m, sum);
    const char *params[] = {version, m->name, sum};
    PGresult *r = hk_pg_exec(pg, "hk_migrate_record",
                             "INSERT INTO hookd_schema_migrations (version, name, checksum)"
                             " VALUES ($1::integer, $2, $3)",
                             3, params, why, sizeof(why));
    if (r == NULL) {
        snprintf(err, err_size, "migration %d (%s): recording it failed: %s", m->version, m->name,
                 why);
        return -1;
    }
    PQclear(r);
    return 0;
}

int hk_migrate_apply(hk_pg_t *pg, int *applied, char *err, size_t err_size)
{
    if (applied)
        *applied = 0;
    unsigned char *done = calloc(hk_migrations_cnt ? hk_migrations_cnt : 1, 1);
    if (done == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (hk_pg_begin(pg, err, err_size) != 0) {
        free(done);
        return -1;
    }
    int n = 0;
    char lock_sql[64];
    snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_xact_lock(%lld)",
             (long long)HK_MIGRATE_LOCK_KEY);
    if (run(pg, "SET LOCAL statement_timeout = 0", err, err_size) != 0 ||
        run(pg, lock_sql, err, err_size) != 0 || run(pg, create_sql, err, err_size) != 0 ||
        check_recorded(pg, done, err, err_size) != 0)
        goto fail;
    for (size_t i = 0; i < hk_migrations_cnt; i++) {
        if (done[i])
            continue;
        if (apply_one(pg, &hk_migrations[i], err, err_size) != 0)
            goto fail;
        n++;
    }
    if (hk_pg_commit(pg, err, err_size) != 0) {
        free(done);
        return -1;
    }
    free(done);
    if (applied)
        *applied = n;
    return 0;

fail:
    hk_pg_rollback(pg);
    free(done);
    return -1;
}

typedef struct status_row {
    int version;
    const char *name;
    const char *applied_at; // NULL = pending
    const char *note;       // NULL = none
} status_row_t;

static int row_cmp(const void *a, const void *b)
{
    const status_row_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

int hk_migrate_status(hk_pg_t *pg, FILE *out, char *err, size_t err_size)
{
    PGresult *exists = hk_pg_exec_script(
        pg, "SELECT to_regclass('hookd_schema_migrations') IS NOT NULL", 0, err, err_size);
    if (exists == NULL)
        return -1;
    int have_table = strcmp(PQgetvalue(exists, 0, 0), "t") == 0;
    PQclear(exists);

    PGresult *r = NULL;
    if (have_table) {
        r = hk_pg_exec_script(pg, status_sql, 0, err, err_size);
        if (r == NULL)
            return -1;
    }
    int nrec = r ? PQntuples(r) : 0;
    status_row_t *rows = calloc(hk_migrations_cnt + (size_t)nrec + 1, sizeof(*rows));
    if (rows == NULL) {
        PQclear(r);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    size_t cnt = 0;
    for (size_t i = 0; i < hk_migrations_cnt; i++)
        rows[cnt++] = (status_row_t){hk_migrations[i].version, hk_migrations[i].name, NULL, NULL};
    for (int i = 0; i < nrec; i++) {
        int version = atoi(PQgetvalue(r, i, 0));
        const hk_migration_t *m = find(version);
        if (m == NULL) {
            rows[cnt++] = (status_row_t){version, PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
                                         "unknown to this hookd"};
            continue;
        }
        status_row_t *row = &rows[m - hk_migrations];
        row->applied_at = PQgetvalue(r, i, 3);
        char ours[65];
        hk_migrate_checksum(m, ours);
        if (strcmp(ours, PQgetvalue(r, i, 2)) != 0)
            row->note = "changed after it was applied";
    }
    qsort(rows, cnt, sizeof(*rows), row_cmp);
    for (size_t i = 0; i < cnt; i++) {
        fprintf(out, "%d\t%s\t%s%s%s\n", rows[i].version, rows[i].name,
                rows[i].applied_at ? rows[i].applied_at : "pending", rows[i].note ? "\t" : "",
                rows[i].note ? rows[i].note : "");
    }
    free(rows);
    PQclear(r);
    return 0;
}
