//! Revisions and a change feed, so that every replica's cache learns every
//! committed write (by this service, another replica or a person with psql):
//!
//! - `revision`: from one sequence, stamped on every insert and update by a
//!   trigger. Successive versions of one row get increasing revisions (an
//!   update stamps it after taking the row's lock), so caches keep the newer.
//! - `changed_by`: the writing transaction's id (`xid8`), indexed. A reader that
//!   remembers the snapshot of its last read asks for the rows written by
//!   transactions that snapshot did not see: exact, whatever order
//!   transactions commit in (a sequence alone would skip a slow transaction's
//!   rows that commit after a faster one's).
//! - `product_tombstones`: one row per deleted product (and one with no id for
//!   a TRUNCATE), stamped the same way.
//! - A statement trigger sends `NOTIFY products_changed` at commit, so
//!   replicas catch up at once; one that missed notifications catches up on
//!   its timer all the same.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE SEQUENCE products_revision_seq;

ALTER TABLE products
    ADD COLUMN revision bigint NOT NULL DEFAULT nextval('products_revision_seq'),
    ADD COLUMN changed_by xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX products_changed_by ON products (changed_by);

CREATE TABLE product_tombstones (
    id bigint,
    revision bigint NOT NULL DEFAULT nextval('products_revision_seq'),
    changed_by xid8 NOT NULL DEFAULT pg_current_xact_id(),
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_tombstones_changed_by ON product_tombstones (changed_by);

CREATE FUNCTION products_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('products_revision_seq');
    NEW.changed_by := pg_current_xact_id();
    RETURN NEW;
END $$;
CREATE TRIGGER products_stamp BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp();

CREATE FUNCTION products_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_tombstones (id) VALUES (OLD.id);
    RETURN OLD;
END $$;
CREATE TRIGGER products_tombstone AFTER DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_tombstone();

CREATE FUNCTION products_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_tombstones (id) VALUES (NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER products_truncated AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_truncated();

CREATE FUNCTION products_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('products_changed', '');
    RETURN NULL;
END $$;
CREATE TRIGGER products_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_notify();
"#;

const DOWN: &str = r#"
DROP TRIGGER products_notify ON products;
DROP FUNCTION products_notify();
DROP TRIGGER products_truncated ON products;
DROP FUNCTION products_truncated();
DROP TRIGGER products_tombstone ON products;
DROP FUNCTION products_tombstone();
DROP TRIGGER products_stamp ON products;
DROP FUNCTION products_stamp();
DROP TABLE product_tombstones;
ALTER TABLE products DROP COLUMN changed_by, DROP COLUMN revision;
DROP SEQUENCE products_revision_seq;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
