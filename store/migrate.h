// migrate: the schema. store/migrations/NNNN_<name>.sql are compiled into the
// binary (store/migrations/embed.cmake) and applied in version order, each at
// most once per database, recorded in hookd_schema_migrations(version, name,
// checksum, applied_at). Replicas starting together serialize on a
// transaction-scoped advisory lock, so exactly one of them applies the schema.
// A released migration is never edited: its SHA-256 is checked on every apply.
#ifndef HK_MIGRATE_H
#define HK_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include "store/pg.h"

// pg_advisory_xact_lock key shared by every hookd ("hookd" in ASCII).
#define HK_MIGRATE_LOCK_KEY 0x686f6f6b64LL

typedef struct hk_migration {
    int version;
    const char *name; // from the file name: 0001_init.sql -> "init"
    const char *sql;  // the file's bytes, NUL-terminated
    size_t sql_len;
} hk_migration_t;

// The embedded migrations, ascending by version (generated file).
extern const hk_migration_t hk_migrations[];
extern const size_t hk_migrations_cnt;

// SHA-256 of the migration's sql as 64 lowercase hex digits into hex[65].
void hk_migrate_checksum(const hk_migration_t *m, char hex[65]);

// Applies every embedded migration not yet recorded, all in ONE transaction under
// pg_advisory_xact_lock(HK_MIGRATE_LOCK_KEY), recording each in
// hookd_schema_migrations. Fails (-1, err, nothing applied) when an applied
// migration's checksum differs from the embedded one ("migration 1 (init) was
// changed after it was applied: checksum <db> in the database, <ours> in this
// binary"), when the database has a version this binary does not know ("database
// has migration 7, unknown to this hookd (newest known: 1); upgrade hookd"), or
// when a migration fails ("migration 2 (x) failed: <server message>").
// *applied (may be NULL) = how many were applied now; 0 when already up to date.
// Waits for a concurrent applier; the statements run without statement_timeout.
int hk_migrate_apply(hk_pg_t *pg, int *applied, char *err, size_t err_size);

// For `hookctl migrate`: one line per migration, embedded ones in order plus any
// the database has that this binary does not know:
//   "<version>\t<name>\t<applied_at RFC 3339 | pending>[\t<note>]\n"
// where note is "changed after it was applied" or "unknown to this hookd".
// Read only; works on a database never migrated (all pending). 0 ok.
int hk_migrate_status(hk_pg_t *pg, FILE *out, char *err, size_t err_size);

#endif
