-- 0001 init: batches with their terminal items, and dead letters (DESIGN §9).
-- Applied by store/migrate.c in one transaction under hookd's advisory lock.
-- Never edit a migration once released: add NNNN_<name>.sql instead.

CREATE TABLE batches (
    id          text        PRIMARY KEY,
    tenant      text        NOT NULL,
    total       bigint      NOT NULL CHECK (total >= 0),
    succeeded   bigint      NOT NULL DEFAULT 0,
    failed      bigint      NOT NULL DEFAULT 0,
    skipped     bigint      NOT NULL DEFAULT 0,
    cursor      bigint      NOT NULL DEFAULT 0,
    status      text        NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'completed_with_failures', 'aborted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Only terminal items are stored; an item's first terminal row is final.
CREATE TABLE batch_items (
    batch_id          text        NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    idx               integer     NOT NULL CHECK (idx >= 0),
    status            text        NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped')),
    attempts          integer     NOT NULL DEFAULT 0,
    last_http_status  integer,
    last_error        text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, idx)
);

CREATE TABLE dead_letters (
    id                  bigserial   PRIMARY KEY,
    job_id              text        NOT NULL,
    tenant              text        NOT NULL,
    original_topic      text        NOT NULL,
    original_partition  integer     NOT NULL,
    original_offset     bigint      NOT NULL,
    key                 bytea,
    value               bytea       NOT NULL,
    error_class         text        NOT NULL,
    error               text        NOT NULL,
    http_status         integer,
    attempts            integer     NOT NULL,
    batch_id            text,
    item_idx            integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    replayed_at         timestamptz,
    UNIQUE (original_topic, original_partition, original_offset, job_id)
);

CREATE INDEX dead_letters_error_class_idx ON dead_letters (error_class);
CREATE INDEX dead_letters_created_at_idx ON dead_letters (created_at);
-- hookctl dlq replay walks the rows not yet replayed, oldest first.
CREATE INDEX dead_letters_pending_idx ON dead_letters (id) WHERE replayed_at IS NULL;
