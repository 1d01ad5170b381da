//! The `gatehouse` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::config::{Config, Overrides};
use gatehouse::{Gatehouse, admin, shutdown_signal, telemetry};
use serde_json::json;

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
    /// Manage accounts (platform admins).
    Users(Managed<UsersCommand>),
    /// Manage API keys (your own; `--all` lists everyone's).
    Keys(Managed<KeysCommand>),
    /// Manage the model catalogue.
    Models(Managed<ModelsCommand>),
    /// Manage inference endpoints.
    Endpoints(Managed<EndpointsCommand>),
}

/// A management command and where it goes: a running server (`--url` and
/// `--token`), or, without a URL, the configured store directly, as the
/// first admin.
#[derive(clap::Args)]
struct Managed<C: Subcommand> {
    #[command(subcommand)]
    command: C,
    /// A running server, e.g. http://localhost:3000.
    #[arg(long, env = "GATEHOUSE_URL", global = true)]
    url: Option<String>,
    /// A JWT, session token or API key with the `management` scope.
    #[arg(long, env = "GATEHOUSE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print the answer as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Configuration file, without --url (default: ./config.yaml if present).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Data directory of the embedded engine, without --url.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List accounts.
    List,
    /// Create an account; without --password one is generated and shown once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Disable an account: it can no longer sign in, its sessions end.
    Disable { id: String },
    /// Set an account's platform roles (the whole set; `user` always stays).
    SetRoles {
        id: String,
        #[arg(required = true)]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List keys (yours; --all: everyone's).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Create a key; it is shown once.
    Create {
        #[arg(long, default_value = "")]
        label: String,
        /// Model names the key may use (default: every model you may use).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        #[arg(long)]
        rpm: Option<u32>,
        #[arg(long)]
        tpm: Option<u32>,
        /// Also usable on the management API.
        #[arg(long)]
        management: bool,
    },
    /// Revoke a key at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List models.
    List,
    /// Add a model to an endpoint.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        upstream_name: Option<String>,
        /// US dollars per input token.
        #[arg(long, default_value_t = 0.0)]
        input_cost: f64,
        /// US dollars per output token.
        #[arg(long, default_value_t = 0.0)]
        output_cost: f64,
        /// Enabled at once (models start disabled otherwise).
        #[arg(long)]
        enabled: bool,
    },
    /// Enable a model (or disable it with --disable).
    Enable {
        id: String,
        #[arg(long)]
        disable: bool,
    },
}

#[derive(Subcommand)]
enum EndpointsCommand {
    /// List endpoints.
    List,
    /// Add an endpoint.
    Create {
        #[arg(long)]
        name: String,
        /// With or without a trailing /v1.
        #[arg(long)]
        base_url: String,
        /// openai or anthropic.
        #[arg(long, default_value = "openai")]
        flavour: String,
        /// A credential ID.
        #[arg(long)]
        credential: Option<String>,
    },
    /// Read the endpoint's model list and add or update its models.
    Sync { id: String },
}

const USER_COLUMNS: &[&str] = &["id", "email", "username", "roles", "status"];
const KEY_COLUMNS: &[&str] = &[
    "id",
    "label",
    "display_prefix",
    "allowed_models",
    "scopes",
    "revoked_at",
];
const MODEL_COLUMNS: &[&str] = &[
    "id",
    "name",
    "endpoint_id",
    "upstream_name",
    "enabled",
    "input_cost_per_token",
    "output_cost_per_token",
];
const ENDPOINT_COLUMNS: &[&str] = &["id", "name", "api_base_url", "flavour", "enabled"];

impl UsersCommand {
    fn call(self) -> admin::Call {
        use reqwest::Method;
        match self {
            UsersCommand::List => admin::Call::get_list("/api/v1/users", USER_COLUMNS),
            UsersCommand::Create {
                email,
                password,
                username,
                display_name,
            } => admin::Call::send(
                Method::POST,
                "/api/v1/users",
                Some(
                    json!({"email": email, "password": password, "username": username, "display_name": display_name}),
                ),
                &["generated_password"],
            ),
            UsersCommand::Disable { id } => admin::Call::send(
                Method::PATCH,
                format!("/api/v1/users/{id}"),
                Some(json!({"status": "disabled"})),
                USER_COLUMNS,
            ),
            UsersCommand::SetRoles { id, roles } => admin::Call::send(
                Method::PATCH,
                format!("/api/v1/users/{id}"),
                Some(json!({"roles": roles})),
                USER_COLUMNS,
            ),
        }
    }
}

impl KeysCommand {
    fn call(self) -> admin::Call {
        use reqwest::Method;
        match self {
            KeysCommand::List { all } => admin::Call::get_list(
                if all {
                    "/api/v1/api-keys?all=true"
                } else {
                    "/api/v1/api-keys"
                },
                KEY_COLUMNS,
            ),
            KeysCommand::Create {
                label,
                models,
                rpm,
                tpm,
                management,
            } => {
                let scopes = if management {
                    vec!["gateway", "management"]
                } else {
                    vec!["gateway"]
                };
                admin::Call::send(
                    Method::POST,
                    "/api/v1/api-keys",
                    Some(
                        json!({"label": label, "allowed_models": models, "rpm_limit": rpm, "tpm_limit": tpm, "scopes": scopes}),
                    ),
                    &["id", "key", "label", "scopes"],
                )
            }
            KeysCommand::Revoke { id } => admin::Call::send(
                Method::DELETE,
                format!("/api/v1/api-keys/{id}"),
                None,
                &["status"],
            ),
        }
    }
}

impl ModelsCommand {
    fn call(self) -> admin::Call {
        use reqwest::Method;
        match self {
            ModelsCommand::List => admin::Call::get_list("/api/v1/models", MODEL_COLUMNS),
            ModelsCommand::Create {
                name,
                endpoint,
                upstream_name,
                input_cost,
                output_cost,
                enabled,
            } => admin::Call::send(
                Method::POST,
                "/api/v1/models",
                Some(json!({
                    "name": name, "endpoint_id": endpoint, "upstream_name": upstream_name,
                    "input_cost_per_token": input_cost, "output_cost_per_token": output_cost,
                    "enabled": enabled,
                })),
                MODEL_COLUMNS,
            ),
            ModelsCommand::Enable { id, disable } => admin::Call::send(
                Method::PATCH,
                format!("/api/v1/models/{id}"),
                Some(json!({"enabled": !disable})),
                MODEL_COLUMNS,
            ),
        }
    }
}

impl EndpointsCommand {
    fn call(self) -> admin::Call {
        use reqwest::Method;
        match self {
            EndpointsCommand::List => admin::Call::get_list("/api/v1/endpoints", ENDPOINT_COLUMNS),
            EndpointsCommand::Create {
                name,
                base_url,
                flavour,
                credential,
            } => admin::Call::send(
                Method::POST,
                "/api/v1/endpoints",
                Some(
                    json!({"name": name, "base_url": base_url, "flavour": flavour, "credential_id": credential}),
                ),
                ENDPOINT_COLUMNS,
            ),
            EndpointsCommand::Sync { id } => admin::Call::send(
                Method::POST,
                format!("/api/v1/endpoints/{id}/sync"),
                None,
                &["added", "updated", "unchanged"],
            ),
        }
    }
}

/// Runs a management command and prints its answer.
fn manage<C: Subcommand>(managed: Managed<C>, call: admin::Call) -> ExitCode {
    let target = match (managed.url, managed.token) {
        (Some(url), Some(token)) => Ok(admin::Target::Server { url, token }),
        (Some(_), None) => Err(anyhow::anyhow!(
            "--url needs --token (or GATEHOUSE_TOKEN): a JWT, session token or management API key"
        )),
        (None, _) => {
            let overrides = Overrides {
                config_file: managed.config,
                data_dir: managed.data_dir,
                ..Overrides::default()
            };
            Config::load(&overrides)
                .map(|c| admin::Target::Store(Box::new(c)))
                .map_err(anyhow::Error::from)
        }
    };
    let target = match target {
        Ok(target) => target,
        Err(e) => return fail(e),
    };
    // Only warnings reach standard error (the first admin's generated
    // password among them, when this command is the store's first start).
    telemetry::init(&gatehouse::config::LogConfig {
        level: "warn".into(),
        format: gatehouse::config::LogFormat::Plain,
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(e),
    };
    match runtime.block_on(admin::run(call, target, managed.json)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{e:#}")),
    }
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
        Command::Users(mut managed) => {
            let command = std::mem::replace(&mut managed.command, UsersCommand::List);
            manage(managed, command.call())
        }
        Command::Keys(mut managed) => {
            let command = std::mem::replace(&mut managed.command, KeysCommand::List { all: false });
            manage(managed, command.call())
        }
        Command::Models(mut managed) => {
            let command = std::mem::replace(&mut managed.command, ModelsCommand::List);
            manage(managed, command.call())
        }
        Command::Endpoints(mut managed) => {
            let command = std::mem::replace(&mut managed.command, EndpointsCommand::List);
            manage(managed, command.call())
        }
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
