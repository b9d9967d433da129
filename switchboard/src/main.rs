//! The `switchboard` binary: one executable, several subcommands.

mod config;
mod serve;
mod token_cmd;
mod turn_cmd;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A WebRTC SFU with signaling and a web client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SFU, signaling and the web client (http://127.0.0.1:8080 by default)
    Serve(Box<config::ServeArgs>),
    /// Run only the STUN/TURN server (it is also embedded in `serve`)
    Turn(turn_cmd::TurnArgs),
    /// Mint an access token (JWT) with the server's API key and secret
    Token(token_cmd::TokenArgs),
    /// Load-test a server with synthetic WebRTC participants (see BENCHMARKS.md)
    Bench(loadgen::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .init();
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Bench(args) => return loadgen::run(args),
        Command::Token(args) => return token_cmd::run(args),
        command => Cli { command },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve(args) => {
            let config = config::ServeConfig::resolve(&args)?;
            runtime.block_on(serve::run(config))
        }
        Command::Turn(args) => runtime.block_on(turn_cmd::run(args)),
        Command::Bench(_) | Command::Token(_) => {
            unreachable!("handled above, without the multi-thread runtime")
        }
    }
}
