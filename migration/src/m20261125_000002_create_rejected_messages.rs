use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RejectedMessages::Table)
                    .if_not_exists()
                    .col(big_pk_auto(RejectedMessages::Id))
                    .col(text(RejectedMessages::Stream))
                    .col(big_integer(RejectedMessages::StreamSeq))
                    .col(text(RejectedMessages::Subject))
                    .col(blob(RejectedMessages::Payload))
                    .col(big_integer(RejectedMessages::PayloadLen))
                    .col(text(RejectedMessages::Reason))
                    .col(
                        timestamp_with_time_zone(RejectedMessages::RejectedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await?;
        // A redelivered rejection is stored once.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("rejected_messages_stream_seq_key")
                    .table(RejectedMessages::Table)
                    .col(RejectedMessages::Stream)
                    .col(RejectedMessages::StreamSeq)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RejectedMessages::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RejectedMessages {
    Table,
    Id,
    Stream,
    StreamSeq,
    Subject,
    Payload,
    PayloadLen,
    Reason,
    RejectedAt,
}
