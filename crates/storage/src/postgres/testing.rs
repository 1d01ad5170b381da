//! Test support: a throwaway PostgreSQL server, started once per test process
//! from the machine's PostgreSQL binaries in a temporary directory, on a free
//! port, and stopped when the process exits.
//!
//! Where no binaries are found, [`TestPostgres::shared`] says so in one line and
//! returns `None` so tests can skip — unless `GATEHOUSE_TEST_REQUIRE_POSTGRES=1`,
//! in which case it panics.
//!
//! Test support only: a failed setup step panics with what failed, as a failed
//! assertion would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set to `1` to make a missing PostgreSQL a test failure instead of a skip.
pub const REQUIRE_ENV: &str = "GATEHOUSE_TEST_REQUIRE_POSTGRES";

/// A running throwaway server.
pub struct TestPostgres {
    port: u16,
    next_db: AtomicU32,
}

static SHARED: OnceLock<Option<TestPostgres>> = OnceLock::new();

impl TestPostgres {
    /// The server of this test process, started on first use.
    pub fn shared() -> Option<&'static TestPostgres> {
        SHARED
            .get_or_init(|| match start() {
                Ok(server) => Some(server),
                Err(reason) if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") => {
                    panic!("PostgreSQL is required ({REQUIRE_ENV}=1) but {reason}")
                }
                Err(reason) => {
                    // Straight to stderr: libtest captures `eprintln!` of passing tests.
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "skipping PostgreSQL tests: {reason}");
                    None
                }
            })
            .as_ref()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::SeqCst));
        let admin = self.url("postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("CREATE DATABASE {name}"))
                        .await
                        .expect("create test database");
                    return self.url(&name);
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("test PostgreSQL does not accept connections: {e}"),
            }
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://gatehouse@127.0.0.1:{}/{database}", self.port)
    }
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("GATEHOUSE_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    versions.sort();
    if let Some(dir) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
    })
}

/// The `postgres` account's uid and gid when running as root (PostgreSQL
/// refuses to run as root).
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres"))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            "running as root and there is no `postgres` user to run the server as".into()
        })
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

/// Removes directories left by earlier test processes that are gone.
fn remove_stale(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("gatehouse-pg-")
            .and_then(|r| r.split('-').next())
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start() -> Result<TestPostgres, String> {
    let bindir = find_bindir().ok_or("no PostgreSQL binaries (initdb, postgres) were found")?;
    let user = server_user()?;
    let root = std::env::temp_dir();
    remove_stale(&root);
    let dir = tempfile::Builder::new()
        .prefix(&format!("gatehouse-pg-{}-", std::process::id()))
        .tempdir_in(&root)
        .map_err(|e| e.to_string())?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let mut initdb = Command::new(bindir.join("initdb"));
    initdb
        .args([
            "-A",
            "trust",
            "-U",
            "gatehouse",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
            "-D",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_user(&mut initdb, user);
    let output = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }

    let port = free_port()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let postgres = bindir.join("postgres");
    let log = dir.join("postgres.log");
    // The server is a child of a thread that lives as long as the process, with
    // a parent-death signal: when the test process ends, so does the server.
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(postgres);
        command
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(&dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args([
                "-c",
                "max_connections=400",
                "-c",
                "max_pred_locks_per_transaction=256",
            ]);
        as_user(&mut command, user);
        match std::fs::File::create(&log) {
            Ok(file) => {
                command.stderr(file);
            }
            Err(_) => {
                command.stderr(Stdio::null());
            }
        }
        command.stdout(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches only this process.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                let _ = ready_tx.send(Ok(()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = ready_tx.send(Err(format!("starting postgres: {e}")));
            }
        }
        // Keep the thread (the parent) alive until the process exits.
        loop {
            std::thread::park();
        }
    });
    ready_rx
        .recv()
        .map_err(|_| "the PostgreSQL starter thread died".to_string())??;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "PostgreSQL did not listen on port {port} within 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(TestPostgres {
        port,
        next_db: AtomicU32::new(0),
    })
}
