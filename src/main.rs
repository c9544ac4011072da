//! The `identityd` binary: parse the command line, start logging, dispatch.

use clap::Parser;
use identityd::cli;
use identityd::config::{Cli, Command, ServeConfig};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        // A bare `identityd` serves with flags taken from the environment alone.
        None => match Cli::try_parse_from(["identityd", "serve"]).map(|c| c.command) {
            Ok(Some(c)) => c,
            Ok(None) | Err(_) => return ExitCode::FAILURE,
        },
    };
    let format = match &command {
        Command::Serve(ServeConfig { log_format, .. }) => *log_format,
        _ => identityd::config::LogFormat::Text,
    };
    cli::init_logging(format);
    match cli::dispatch(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identityd: {e}");
            ExitCode::FAILURE
        }
    }
}
