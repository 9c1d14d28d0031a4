//! Ids the service assigns stay small and dense, whatever ids publishers
//! choose.
//!
//! Before, every batch moved the id sequence past the largest id stored, so
//! one explicit id near 2^53 (a smoke test's, say) sent every later id-less
//! product there, and one at 2^53 sent them past what a message can address.
//! Now an id-less product takes the sequence's next id, or, if that one is
//! taken (written by id, by hand or imported), the first free id after it;
//! past 2^53 (the contract's largest id) it gets none, and Postgres refuses
//! it as out of range (a data exception: the message is set aside with that
//! reason). The sequence is brought back to the largest id the service
//! itself assigned (rows with a `created_by`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
-- An identity column takes no other default: the id gets a sequence of its own.
ALTER TABLE products ALTER COLUMN id DROP IDENTITY IF EXISTS;
CREATE SEQUENCE IF NOT EXISTS products_id_seq AS bigint OWNED BY products.id;

CREATE FUNCTION next_product_id() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    candidate bigint := nextval('products_id_seq');
BEGIN
    IF EXISTS (SELECT 1 FROM products WHERE id = candidate) THEN
        -- The first id after `candidate` that no row holds.
        SELECT min(p.id) + 1 INTO candidate
        FROM products p
        WHERE p.id >= candidate
          AND NOT EXISTS (SELECT 1 FROM products q WHERE q.id = p.id + 1);
        -- Never backwards: another writer may have moved it further meanwhile.
        PERFORM setval('products_id_seq', candidate)
        WHERE candidate > (SELECT last_value FROM products_id_seq);
    END IF;
    IF candidate > 9007199254740992 THEN
        RAISE EXCEPTION 'no product id is left to assign: ids go up to 2^53 (9007199254740992)'
            USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    RETURN candidate;
END
$$;

ALTER TABLE products ALTER COLUMN id SET DEFAULT next_product_id();

SELECT setval(
    'products_id_seq',
    GREATEST(1, COALESCE((SELECT max(id) FROM products WHERE created_by IS NOT NULL), 1)),
    EXISTS (SELECT 1 FROM products WHERE created_by IS NOT NULL)
);
"#;

const DOWN: &str = r#"
ALTER TABLE products ALTER COLUMN id SET DEFAULT nextval('products_id_seq');
DROP FUNCTION next_product_id();
"#;
// (Down leaves a plain sequence where the identity was: the same ids.)

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
