//! The shared test harness: real servers started in-process or as child
//! processes, the first admin, accounts, and signing in.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse::Gatehouse;
use gatehouse::config::{Config, Secret};
use gatehouse_core::accounts::AdminNewUser;
use gatehouse_core::model::accounts::User;
use gatehouse_core::model::sessions::ClientInfo;
use gatehouse_core::services::Services;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The password of every account the tests create.
pub const PASSWORD: &str = "correct horse battery staple";

/// Makes `admin@example.com`, with [`PASSWORD`], the first admin of `config`.
pub fn with_first_admin(config: &mut Config) {
    config.bootstrap.admin_email = "admin@example.com".into();
    config.bootstrap.admin_password = Some(Secret(PASSWORD.into()));
}

/// [`test_config`] on the memory engine with the first admin of
/// [`with_first_admin`].
pub fn admin_config() -> Config {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    config
}

/// A configuration for tests: loopback, ephemeral ports, fixed secrets, and the
/// memory engine unless a data directory is given.
pub fn test_config(data_dir: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.server.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.auth.jwt_secret = Some(Secret(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    ));
    config.auth.key_encryption_secret = Some(Secret(
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into(),
    ));
    match data_dir {
        Some(dir) => {
            config.storage.engine = "embedded".into();
            config.storage.path = dir.to_path_buf();
        }
        None => config.storage.engine = "memory".into(),
    }
    config
}

/// A running server.
pub struct TestApp {
    pub http: String,
    pub grpc: SocketAddr,
    pub services: Services,
    pub client: reqwest::Client,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app(config: Config) -> TestApp {
    let server = Gatehouse::build(&config).await.expect("server builds");
    let http = format!("http://{}", server.http_addr().unwrap());
    let grpc = server.grpc_addr().unwrap();
    let services = server.services.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        http,
        grpc,
        services,
        client: reqwest::Client::new(),
        stop,
        handle,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// Signs `login` in over REST with [`PASSWORD`]; its JWT.
    pub async fn sign_in(&self, login: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"login": login, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "{login} signs in: {body}");
        body["token"].as_str().expect("a token").to_string()
    }

    /// `Bearer <JWT>` of `login`, signed in with [`PASSWORD`].
    pub async fn bearer(&self, login: &str) -> String {
        format!("Bearer {}", self.sign_in(login).await)
    }

    /// The first admin of [`with_first_admin`], signed in through the service.
    pub async fn first_admin(&self) -> User {
        self.services
            .accounts
            .login("admin@example.com", PASSWORD, &ClientInfo::default())
            .await
            .expect("the first admin signs in")
            .0
    }

    /// The account `name@example.com` with [`PASSWORD`], created by `admin`.
    pub async fn create_user(&self, admin: &User, name: &str) -> User {
        let email = format!("{name}@example.com");
        let new = AdminNewUser::new(&email, Some(PASSWORD));
        self.services
            .accounts
            .admin_create_user(admin, new, &ClientInfo::default())
            .await
            .expect("the user is created")
            .0
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Sends a request with an optional header (e.g. `("authorization",
    /// "Bearer …")`) and JSON body; returns the status and the JSON answer
    /// (`null` when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        header: Option<(&str, &str)>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// `GET path` with an optional header, as [`call`](Self::call).
    pub async fn get<'a>(
        &self,
        path: &str,
        header: Option<(&'a str, &'a str)>,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, header, None).await
    }

    /// `DELETE path` with an optional header, as [`call`](Self::call).
    pub async fn delete<'a>(
        &self,
        path: &str,
        header: Option<(&'a str, &'a str)>,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::DELETE, path, header, None).await
    }

    /// `POST path` with an optional header and JSON body, as [`call`](Self::call).
    pub async fn post<'a>(
        &self,
        path: &str,
        header: Option<(&'a str, &'a str)>,
        body: impl Into<Option<serde_json::Value>>,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, header, body.into())
            .await
    }

    /// `PATCH path` with an optional header and JSON body, as [`call`](Self::call).
    pub async fn patch<'a>(
        &self,
        path: &str,
        header: Option<(&'a str, &'a str)>,
        body: impl Into<Option<serde_json::Value>>,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PATCH, path, header, body.into())
            .await
    }

    /// `PUT path` with an optional header and JSON body, as [`call`](Self::call).
    pub async fn put<'a>(
        &self,
        path: &str,
        header: Option<(&'a str, &'a str)>,
        body: impl Into<Option<serde_json::Value>>,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PUT, path, header, body.into())
            .await
    }

    /// Requests sent with `authorization: <value>` (`Bearer <JWT>` or a
    /// session token).
    pub fn by<'a>(&'a self, value: &'a str) -> As<'a> {
        As {
            app: self,
            header: ("authorization", value),
        }
    }

    /// Requests sent with `x-api-key: <key>`.
    pub fn with_key<'a>(&'a self, key: &'a str) -> As<'a> {
        As {
            app: self,
            header: ("x-api-key", key),
        }
    }

    /// Stops the server gracefully and waits until it has released the store.
    pub async fn stop(self) {
        let TestApp {
            stop,
            handle,
            services,
            ..
        } = self;
        drop(services);
        let _ = stop.send(());
        handle
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

/// A `gatehouse serve` child process of the built binary.
pub struct ServerProcess {
    pub child: Child,
    /// `host:port` of its REST listener.
    pub http: String,
    lines: mpsc::Receiver<String>,
    /// Log lines up to and including `serving`.
    startup: Vec<String>,
}

/// The built `gatehouse` binary with `args`, run in `dir` with plain log
/// lines and `envs`.
pub fn gatehouse(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .args(args)
        .env("GATEHOUSE__LOG__FORMAT", "plain")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir);
    command
}

/// `gatehouse serve` on ephemeral loopback ports.
pub fn serve(dir: &Path, envs: &[(&str, String)]) -> Command {
    let mut command = gatehouse(dir, envs, &["serve", "--http-addr", "127.0.0.1:0"]);
    command.args(["--grpc-addr", "127.0.0.1:0"]);
    command
}

/// Starts `gatehouse serve` on ephemeral loopback ports with `envs` and `args`,
/// and waits for its `serving` log line.
pub fn spawn_process(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> ServerProcess {
    let mut child = serve(dir, envs)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gatehouse");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut startup = Vec::new();
    let http = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server logs `serving` within seconds");
        startup.push(line.clone());
        if let Some(rest) = line.split("serving http=").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    ServerProcess {
        child,
        http,
        lines,
        startup,
    }
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Log lines printed before the server was ready.
    pub fn startup_lines(&self) -> impl Iterator<Item = &String> {
        self.startup.iter()
    }

    /// Log lines printed since the last call (after startup).
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits up to `within` for a log line containing `text`; the lines read
    /// meanwhile.
    pub fn wait_for_line(&self, text: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    seen.push(line);
                    if found {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        seen
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One caller's requests: [`TestApp::call`] with the same header each time.
pub struct As<'a> {
    app: &'a TestApp,
    header: (&'a str, &'a str),
}

impl As<'_> {
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: impl Into<Option<serde_json::Value>>,
    ) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, body.into()).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.app.call(method, path, Some(self.header), body).await
    }
}

/// Sends `request` and reads its JSON answer (`null` when there is none).
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = request.send().await.expect("request");
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_default()
}

/// A request log as the gateway writes it: `user`'s successful call to
/// `model`, at the time its ID says; change what a test needs with `..`.
pub fn request_log(
    id: gatehouse_core::Id,
    user: gatehouse_core::Id,
    model: &str,
) -> gatehouse_core::usage::RequestLog {
    gatehouse_core::usage::RequestLog {
        id,
        at: chrono::DateTime::from_timestamp_millis(id.timestamp_millis()).unwrap_or_default(),
        key_id: gatehouse_core::Id(9),
        user_id: user,
        org_id: None,
        model_id: gatehouse_core::Id(1),
        model: model.into(),
        endpoint_id: gatehouse_core::Id(1),
        api: "chat.completions".into(),
        stream: false,
        status: 200,
        latency_ms: 1,
        prompt_tokens: 1,
        completion_tokens: 1,
        cost_micros: 1,
        tokens_estimated: false,
        error: None,
        captured: false,
        request_body: None,
        response_body: None,
    }
}

/// A stand-in upstream's `text/event-stream` answer: event `i` is sent after
/// waiting `pause(i)`.
pub fn sse(events: Vec<String>, pause: fn(usize) -> Duration) -> axum::response::Response {
    let stream = futures_util::stream::unfold((events, 0usize), move |(events, i)| async move {
        let event = events.get(i)?.clone();
        let wait = pause(i);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let item = Ok::<_, std::io::Error>(axum::body::Bytes::from(event));
        Some((item, (events, i + 1)))
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(stream))
        .expect("an event-stream answer")
}

/// The Python interpreter of the virtualenv with the official SDKs
/// (`GATEHOUSE_TEST_PYTHON`, set by `.ci/run`); `None` skips the test unless
/// `GATEHOUSE_TEST_REQUIRE_PYTHON` is set.
pub fn sdk_python() -> Option<String> {
    match std::env::var("GATEHOUSE_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            assert!(
                std::env::var_os("GATEHOUSE_TEST_REQUIRE_PYTHON").is_none(),
                "GATEHOUSE_TEST_PYTHON must name a Python with crates/gatehouse/tests/sdk/requirements.txt installed"
            );
            eprintln!("skipped: set GATEHOUSE_TEST_PYTHON to run the official SDKs");
            None
        }
    }
}

/// Runs `tests/sdk/<script>` with `python` and `args`; its output, a JSON
/// value a line. Panics with what it printed on stderr when it fails.
pub async fn sdk_script(python: &str, script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let output = tokio::process::Command::new(python)
        .arg(path)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}
