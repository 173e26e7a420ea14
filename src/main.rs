//! The `coledger` binary: one executable with subcommands for the service and its tools.

mod audit;
mod backup;
mod bench;
mod bench_api;
mod bench_disburse;
mod bench_settle;
mod config;
mod crash_writer;
mod demo;
mod demo_access;
mod front;
mod http_client;
mod output_file;
mod pages;
mod programme_cli;
mod scheme;
mod secret;
mod serve;
mod simulate;
mod terminal;
mod token;
mod torture;

use anyhow::Result;
use clap::Parser as _;
use config::{
    BenchCommand, CardsCommand, Cli, Command, ExportCommand, SimulateCommand, TerminalCommand,
    TokenCommand, TortureCommand,
};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: a request through the HTTP API allocates and frees
/// many small buffers across threads, and glibc's bins (consolidation, unlinking) cost a
/// measured share of each payment's CPU; BENCHMARKS.md has the A/B figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr so that stdout stays clean for what a command prints.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Token(TokenCommand::Create(args)) => token::create(args).await,
            Command::Token(TokenCommand::List(args)) => token::list(args).await,
            Command::Token(TokenCommand::Revoke(args)) => token::revoke(args).await,
            Command::Backup(args) => backup::backup(args).await,
            Command::Restore(args) => backup::restore(args).await,
            Command::Torture(TortureCommand::Bank(args)) => torture::bank(args).await,
            Command::Torture(TortureCommand::Crash(args)) => torture::crash(args).await,
            Command::Torture(TortureCommand::Failover(args)) => torture::failover(args).await,
            Command::Torture(TortureCommand::Promote(args)) => torture::promote(args).await,
            Command::Torture(TortureCommand::Soak(args)) => torture::soak(args).await,
            Command::Bench(BenchCommand::Ledger(args)) => bench::ledger(args).await,
            Command::Bench(BenchCommand::Api(args)) => bench_api::run(args).await,
            Command::CrashWriter(args) => crash_writer::run(args).await,
            Command::Disburse(args) => programme_cli::disburse(args).await,
            Command::Enrol(args) => programme_cli::enrol(args).await,
            Command::Expire(args) => programme_cli::expire(args).await,
            Command::Cards(CardsCommand::Print(args)) => programme_cli::print_cards(args).await,
            Command::Bench(BenchCommand::Disburse(args)) => bench_disburse::run(args).await,
            Command::Export(ExportCommand::Research(args)) => {
                programme_cli::export_research(args).await
            }
            Command::Export(ExportCommand::Journal(args)) => audit::export_journal(args).await,
            Command::Verify(args) => audit::verify(args).await,
            Command::Simulate(SimulateCommand::Run(args)) => simulate::run(args),
            Command::Simulate(SimulateCommand::Sweep(args)) => simulate::sweep(args),
            Command::Simulate(SimulateCommand::Measure(args)) => simulate::measure(args),
            Command::Bench(BenchCommand::Simulate(args)) => simulate::bench(args),
            Command::Bench(BenchCommand::Settle(args)) => bench_settle::run(args).await,
            Command::Terminal(TerminalCommand::Init(args)) => terminal::init(args).await,
            Command::Terminal(TerminalCommand::Charge(args)) => terminal::charge(args).await,
            Command::Terminal(TerminalCommand::Sales(args)) => terminal::sales(args).await,
        }
    })
}

/// Connects, migrates and starts the committer: what every database-using command does first.
async fn open_ledger(
    url: &str,
) -> Result<(
    wallet_api::Database,
    wallet_api::Committer,
    wallet_api::CommitterTask,
)> {
    use anyhow::Context as _;
    let redacted = wallet_api::db::redact(url);
    let db = wallet_api::Database::connect(url)
        .await
        .with_context(|| format!("connecting to {redacted}"))?;
    db.migrate()
        .await
        .with_context(|| format!("migrating {redacted}"))?;
    let (committer, task) = wallet_api::Committer::start(
        db.clone(),
        wallet_api::CommitterConfig::default(),
        std::sync::Arc::new(wallet_api::SystemClock),
    )
    .await
    .with_context(|| format!("loading the ledger from {redacted}"))?;
    Ok((db, committer, task))
}
