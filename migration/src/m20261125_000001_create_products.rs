use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Products::Id))
                    .col(text(Products::Name))
                    .col(big_integer(Products::Price))
                    .col(text(Products::Manufacturer))
                    .col(text_null(Products::Description))
                    .col(json_binary(Products::Attributes).default(Expr::cust("'{}'::jsonb")))
                    .col(text(Products::Stream))
                    .col(big_integer(Products::StreamSeq))
                    .col(text_null(Products::CreatedBy).unique_key())
                    .col(
                        timestamp_with_time_zone(Products::UpdatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    Price,
    Manufacturer,
    Description,
    Attributes,
    Stream,
    StreamSeq,
    CreatedBy,
    UpdatedAt,
}
