//! The `gatehouse` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::config::{Config, Overrides};
use gatehouse::{Gatehouse, shutdown_signal, telemetry};

/// mimalloc instead of the system allocator: the gateway allocates and frees
/// many small buffers per call across threads, where glibc's malloc was about
/// half of the CPU per call (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "The control plane for AI platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the REST and gRPC servers.
    Serve(ServeArgs),
    /// Check the configuration and print it, secrets hidden.
    CheckConfig(ConfigArgs),
    /// Print the OpenAPI document (YAML) of the REST API.
    Openapi,
    /// Re-encrypt every stored secret with the current key-encryption secret.
    /// First make the new secret `auth.key_encryption_secret` and list the old
    /// one in `auth.previous_key_encryption_secrets`; remove it afterwards.
    RotateEncryptionKey(StoreArgs),
    /// Make a new token-signing key current (the previous one stays published).
    RotateSigningKey(StoreArgs),
}

#[derive(clap::Args)]
struct StoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Data directory of the embedded engine (overrides storage.path).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Configuration file (default: ./config.yaml if present).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Keep everything in memory: nothing survives the process.
    #[arg(long)]
    ephemeral: bool,
    /// REST listen address (overrides server.http_addr).
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<SocketAddr>,
    /// gRPC listen address (overrides server.grpc_addr).
    #[arg(long, value_name = "ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// Data directory of the embedded engine (overrides storage.path).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            print!("{}", gatehouse_api::openapi::yaml());
            ExitCode::SUCCESS
        }
        Command::CheckConfig(args) => {
            let overrides = Overrides {
                config_file: args.config,
                ..Overrides::default()
            };
            match Config::load(&overrides) {
                Ok(config) => match config.redacted_yaml() {
                    Ok(yaml) => {
                        print!("{yaml}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(anyhow::anyhow!("cannot print the configuration: {e}")),
                },
                Err(e) => fail(e),
            }
        }
        Command::RotateEncryptionKey(args) => maintain(args, async |config| {
            let count = gatehouse::rotate_encryption_key(&config).await?;
            Ok(format!("re-encrypted {count} secrets with the current key"))
        }),
        Command::RotateSigningKey(args) => maintain(args, async |config| {
            let kid = gatehouse::rotate_signing_key(&config).await?;
            Ok(format!("new signing key {kid}"))
        }),
        Command::Serve(args) => {
            let overrides = Overrides {
                config_file: args.config.config,
                ephemeral: args.ephemeral,
                http_addr: args.http_addr,
                grpc_addr: args.grpc_addr,
                data_dir: args.data_dir,
            };
            match run(overrides, serve) {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => code,
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Gatehouse::build(&config).await?;
    server.run_until_stopped(shutdown_signal()).await
}

/// Runs a maintenance command against the configured store and prints its
/// one-line result.
fn maintain(
    args: StoreArgs,
    command: impl AsyncFnOnce(Config) -> anyhow::Result<String>,
) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config.config,
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    match run(overrides, command) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Loads the configuration, starts logging and a runtime, and runs `command`
/// on them; a failure is reported on standard error.
fn run<T>(
    overrides: Overrides,
    command: impl AsyncFnOnce(Config) -> anyhow::Result<T>,
) -> Result<T, ExitCode> {
    let config = Config::load(&overrides).map_err(fail)?;
    telemetry::init(&config.log);
    let runtime = tokio::runtime::Runtime::new().map_err(fail)?;
    runtime
        .block_on(command(config))
        .map_err(|e| fail(format!("{e:#}")))
}

/// One line on standard error, and a non-zero exit.
fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatehouse: {error}");
    ExitCode::FAILURE
}
