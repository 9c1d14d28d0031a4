use clap::Parser;
use products::cli::{Cli, Command};
use products::produce::Source;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    products::telemetry::init(cli.settings.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => products::serve(&cli.settings).await,
        Command::Produce { file, count } => {
            let source = match (file, count) {
                (Some(path), _) => Source::File(path),
                (None, Some(count)) => Source::Generated(count),
                (None, None) => Source::Samples,
            };
            products::produce::run(&cli.settings, source).await
        }
        Command::Migrate => products::database::prepare(&cli.settings.database_url).await,
    }
}
