//! Crash test of the embedded engine (a harness-less test binary that is both
//! parent and child).
//!
//! The child opens the store, commits numbered transactions that each write two
//! keys and a high-water mark, and prints `ack N` after each acknowledged commit.
//! The parent kills it with SIGKILL mid-stream, reopens the store, and checks
//! that every acknowledged commit is there and no transaction is half applied.
//! It repeats this several times on the same data directory.

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_storage::embedded::EmbeddedEngine;
use gatehouse_storage::{KeyRange, RangeOptions, Store, TxError};

const ROUNDS: usize = 5;

type R<T> = Result<T, TxError<String>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--crash-child") {
        let dir = args.get(pos + 1).expect("--crash-child needs a directory");
        child(Path::new(dir));
        return ExitCode::SUCCESS;
    }
    // `cargo test -- --list` and filters that do not name this test.
    if args.iter().any(|a| a == "--list") {
        println!("embedded_survives_sigkill: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "embedded_survives_sigkill".contains(f.as_str()))
    {
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    match parent() {
        Ok(()) => {
            println!("crash: 1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("embedded_survives_sigkill failed: {message}");
            println!("crash: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn key(kind: &str, n: u64) -> Vec<u8> {
    gatehouse_storage::tuple::pack(&(kind, n))
}

fn child(dir: &Path) {
    runtime().block_on(async {
        let store = Store::new(Arc::new(EmbeddedEngine::open(dir).expect("open store")));
        let start = store
            .run(|tx| async move {
                R::Ok(
                    tx.get(b"high")
                        .await?
                        .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8]))),
                )
            })
            .await
            .expect("read high-water mark");
        let stdout = std::io::stdout();
        for n in start + 1.. {
            store
                .run(|tx| async move {
                    tx.set(&key("a", n), &n.to_le_bytes())?;
                    // A larger value so that some commits span several pages.
                    tx.set(
                        &key("b", n),
                        &vec![(n % 251) as u8; 1 + (n as usize % 7) * 1000],
                    )?;
                    tx.set(b"high", &n.to_le_bytes())?;
                    R::Ok(())
                })
                .await
                .expect("commit");
            let mut out = stdout.lock();
            writeln!(out, "ack {n}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

fn parent() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut acked_total = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .arg("--crash-child")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of acknowledgements, so the kill lands at
        // different points of the commit path.
        let kill_after = 40 + (round as u64 * 37) % 90;
        let mut acked = 0u64;
        let mut last_ack = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked < kill_after {
            let line = lines
                .next()
                .ok_or("child exited early")?
                .map_err(|e| e.to_string())?;
            last_ack = line
                .strip_prefix("ack ")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unexpected child output {line:?}"))?;
            acked += 1;
            if Instant::now() > deadline {
                return Err("child too slow".into());
            }
        }
        child.kill().map_err(|e| format!("SIGKILL: {e}"))?;
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse().ok()) {
                last_ack = n;
            }
        }
        child.wait().map_err(|e| e.to_string())?;
        verify(dir.path(), last_ack)?;
        acked_total = last_ack;
    }
    if acked_total < ROUNDS as u64 * 40 {
        return Err(format!("only {acked_total} commits acknowledged"));
    }
    Ok(())
}

/// Every commit up to `last_ack` is present in full, and every commit present is
/// complete: both keys, and the high-water mark covers it.
fn verify(dir: &Path, last_ack: u64) -> Result<(), String> {
    runtime().block_on(async {
        let store = Store::new(Arc::new(
            EmbeddedEngine::open(dir).map_err(|e| format!("reopen: {e}"))?,
        ));
        let (high, a, b) = store
            .run(|tx| async move {
                let high = tx
                    .get(b"high")
                    .await?
                    .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
                let a = tx
                    .get_range(
                        &KeyRange::subspace(&gatehouse_storage::tuple::Subspace::from("a")),
                        RangeOptions::default(),
                    )
                    .await?;
                let b = tx
                    .get_range(
                        &KeyRange::subspace(&gatehouse_storage::tuple::Subspace::from("b")),
                        RangeOptions::default(),
                    )
                    .await?;
                R::Ok((high, a.entries.len() as u64, b.entries.len() as u64))
            })
            .await
            .map_err(|e| format!("read back: {e}"))?;
        if high < last_ack {
            return Err(format!(
                "acknowledged commit {last_ack} lost: high-water mark is {high}"
            ));
        }
        if a != high || b != high {
            return Err(format!(
                "half-applied transaction: high={high}, a={a}, b={b}"
            ));
        }
        for n in 1..=high {
            let present = store
                .run(|tx| async move {
                    R::Ok(
                        tx.get(&key("a", n)).await?.is_some()
                            && tx.get(&key("b", n)).await?.is_some(),
                    )
                })
                .await
                .map_err(|e| e.to_string())?;
            if !present {
                return Err(format!("commit {n} incomplete"));
            }
        }
        Ok(())
    })
}
