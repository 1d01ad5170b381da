//! Sign-in throttling through the built binary: parallel guesses are counted
//! before they are judged, and a client that signed in before keeps signing
//! in while someone else's guesses lock the account.

use serde_json::json;

use crate::helpers::{PASSWORD, ServerProcess, json_of, spawn_process};

/// Signs `login` in with `password`, presenting `cookie` if given; the status
/// and the device cookie the answer sets.
async fn sign_in(
    client: &reqwest::Client,
    server: &ServerProcess,
    login: &str,
    password: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>) {
    let mut request = client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"login": login, "password": password}));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let device = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gatehouse_device="))
        .map(|c| c.split(';').next().unwrap().to_string());
    (response.status().as_u16(), device)
}

/// Fifty attempts for `login` at the same moment, the right password at
/// `right` (if any); their statuses in order.
async fn burst(
    client: &reqwest::Client,
    server: &ServerProcess,
    login: &str,
    right: Option<usize>,
) -> Vec<u16> {
    let attempts = (0..50).map(|i| {
        let password = if Some(i) == right {
            PASSWORD
        } else {
            "a wrong guess"
        };
        async move { sign_in(client, server, login, password, None).await.0 }
    });
    futures_util::future::join_all(attempts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_are_refused_after_the_free_ones_and_a_known_client_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [(
        "GATEHOUSE__STORAGE__PATH",
        dir.path().join("data").display().to_string(),
    )];
    let server = spawn_process(dir.path(), &envs, &[]);
    let client = reqwest::Client::new();
    for name in ["ada", "bob", "cyd"] {
        let response = client
            .post(server.url("/api/v1/auth/register"))
            .json(&json!({"email": format!("{name}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }

    // Fifty wrong guesses at once: at most the five free ones are judged.
    let statuses = burst(&client, &server, "ada@example.com", None).await;
    let judged = statuses.iter().filter(|s| **s == 401).count();
    assert!((1..=5).contains(&judged), "{judged} judged: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    // Once the free count is spent, the right password inside a parallel
    // burst gets no 200. (The free ones are spent first, one by one: within
    // a burst alone, the right guess may legitimately be among the first
    // five judged — concurrent requests have no order.)
    for _ in 0..5 {
        let (status, _) = sign_in(&client, &server, "bob@example.com", "a wrong guess", None).await;
        assert_eq!(status, 401);
    }
    let statuses = burst(&client, &server, "bob@example.com", Some(37)).await;
    assert!(statuses.iter().all(|s| *s == 429), "{statuses:?}");

    // Cyd signs in once and her client keeps the device cookie…
    let (status, device) = sign_in(&client, &server, "cyd@example.com", PASSWORD, None).await;
    assert_eq!(status, 200);
    let device = device.expect("a device cookie");
    // …then someone else's guesses lock the account for everyone else…
    let statuses = burst(&client, &server, "cyd@example.com", None).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    let (status, _) = sign_in(&client, &server, "cyd@example.com", PASSWORD, None).await;
    assert_eq!(status, 429);
    // …but not for her client.
    let (status, again) =
        sign_in(&client, &server, "cyd@example.com", PASSWORD, Some(&device)).await;
    assert_eq!(status, 200);
    assert_eq!(again.as_deref(), Some(device.as_str()), "the same device");
    // A made-up cookie is no way around the lock.
    let forged = format!("{}0", device);
    let (status, _) = sign_in(&client, &server, "cyd@example.com", PASSWORD, Some(&forged)).await;
    assert_eq!(status, 429);

    let body = json_of(client.get(server.url("/ready"))).await;
    assert_eq!(body["status"], "ready");
}
