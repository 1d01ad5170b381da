//! Bounded connections through the built binary: half-sent requests and idle
//! connections are closed, a connection cap holds with a log line, and normal
//! calls keep being served throughout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ServerProcess, spawn_process};

/// Whether the server closed `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or other answer before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

async fn health(server: &ServerProcess) -> u16 {
    reqwest::get(server.url("/health"))
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_and_the_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("GATEHOUSE__STORAGE__ENGINE", "memory".to_string()),
        (
            "GATEHOUSE__SERVER__HEADER_READ_TIMEOUT_SECS",
            "1".to_string(),
        ),
        ("GATEHOUSE__SERVER__IDLE_TIMEOUT_SECS", "2".to_string()),
        ("GATEHOUSE__SERVER__MAX_CONNECTIONS", "60".to_string()),
    ];
    let mut server = spawn_process(dir.path(), &envs, &[]);
    let addr = server.http.clone();

    // Forty clients send half a request header and stop.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: gatehouse\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Normal calls are served meanwhile.
    assert_eq!(health(&server).await, 200);
    let started = Instant::now();
    for stream in &mut slow {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // An idle keep-alive connection is closed too, after its request.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: gatehouse\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await);

    // At the cap, new connections are closed at once, and the log says so.
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_millis(500)).await);
    let log = server.wait_for_line("connection limit reached", Duration::from_secs(5));
    assert!(
        log.iter().any(|l| l.contains("connection limit reached")),
        "{log:?}"
    );
    // Once the held ones go, calls are served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&server).await != 200 {
        assert!(
            Instant::now() < deadline,
            "not served after the cap cleared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.terminate().success());
}
