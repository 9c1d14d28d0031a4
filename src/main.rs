use actors::persistence::MessageOutcome;
use clap::{CommandFactory, Parser};
use products::cli::{Cli, Command, RejectedAction};
use products::produce::Source;
use products::settings::LogFormat;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.settings.log_format;
    products::telemetry::init(format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // A fatal error is a log line like any other in JSON (for the
        // collector), and plain text for a person.
        Err(error) if format == LogFormat::Json => {
            tracing::error!(error = %format!("{error:#}"), "products stopped");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    // Every command refuses settings out of range before it connects anywhere,
    // the way clap refuses a value it cannot parse (a usage error, exit code 2).
    let checked = cli
        .settings
        .clone()
        .with_secret_files()
        .and_then(|settings| settings.validate().map(|()| settings));
    match checked {
        Ok(settings) => cli.settings = settings,
        Err(invalid) if cli.settings.log_format == LogFormat::Json => {
            tracing::error!(setting = invalid.var.as_str(), error = %invalid, "products cannot start");
            std::process::exit(2);
        }
        Err(invalid) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, invalid)
            .exit(),
    }
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
        Command::Smoke { url, timeout } => {
            let served = products::smoke::run(&cli.settings, &url, timeout).await?;
            println!(
                "{} (id {}, stream sequence {}) served on {} after {} ms \
                 and on the list after {} ms",
                served.name,
                served.id,
                served.stream_seq,
                served.product_url,
                served.as_json.as_millis(),
                served.in_list.as_millis()
            );
            Ok(())
        }
        Command::HashPassword { name } => {
            let line = products::operators::hash_password_line(&name)?;
            println!("{line}");
            Ok(())
        }
        Command::Healthcheck => {
            let addr = products::operators::loopback(cli.settings.http.addr);
            match products::operators::alive(addr).await {
                Ok(()) => Ok(()),
                Err(reason) => {
                    eprintln!("products at {addr} is not healthy: {reason}");
                    std::process::exit(1);
                }
            }
        }
        Command::Rejected {
            action: RejectedAction::Replay { id, wait },
        } => {
            let replay = products::replay::run(&cli.settings, id, wait).await?;
            match replay.outcome {
                MessageOutcome::Stored { .. } => {
                    println!("{replay}");
                    Ok(())
                }
                _ => {
                    eprintln!("{replay}");
                    std::process::exit(1);
                }
            }
        }
        Command::Migrate => products::database::prepare(&cli.settings.database.url).await,
        Command::Config => {
            for (var, value) in cli.settings.to_env() {
                println!("{var}={value}");
            }
            Ok(())
        }
    }
}
