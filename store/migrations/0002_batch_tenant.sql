-- 0002 batch tenant: a batch is identified by (tenant, id), not by id alone, so
-- another tenant's batch with the same id can neither finish nor reject it.
-- batch_items gains the tenant and references (tenant, batch_id). Existing rows
-- keep their batches' tenant. Constraint names are the ones 0001 got, reused.

ALTER TABLE batch_items ADD COLUMN tenant text;
UPDATE batch_items i SET tenant = b.tenant FROM batches b WHERE b.id = i.batch_id;
ALTER TABLE batch_items ALTER COLUMN tenant SET NOT NULL;

ALTER TABLE batch_items DROP CONSTRAINT batch_items_batch_id_fkey;
ALTER TABLE batch_items DROP CONSTRAINT batch_items_pkey;
ALTER TABLE batches DROP CONSTRAINT batches_pkey;

ALTER TABLE batches ADD CONSTRAINT batches_pkey PRIMARY KEY (tenant, id);
ALTER TABLE batch_items ADD CONSTRAINT batch_items_pkey PRIMARY KEY (tenant, batch_id, idx);
ALTER TABLE batch_items ADD CONSTRAINT batch_items_batch_id_fkey
    FOREIGN KEY (tenant, batch_id) REFERENCES batches (tenant, id) ON DELETE CASCADE;
