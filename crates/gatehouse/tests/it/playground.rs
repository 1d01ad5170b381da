//! The playground through the real server and a real upstream (the gateway
//! tests' stand-in model server, whose streams pause 1.5 s after their first
//! event): a chat's message goes through the gateway's decision, admission
//! and accounting for the signed-in user, streams back as it arrives, and
//! both messages are stored with tokens and cost.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::gateway::World;

/// Ada's default project in her personal organization: (org, project).
async fn ada_project(w: &World, token: &str) -> (String, String) {
    let auth = Some(("authorization", token));
    let (_, orgs) = w.app.get("/api/v1/organizations", auth).await;
    let org = orgs["items"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/organizations/{org}/projects");
    let (_, projects) = w.app.get(&path, auth).await;
    assert_eq!(projects["items"][0]["is_user_default"], true, "{projects}");
    let project = projects["items"][0]["id"].as_str().unwrap().to_string();
    (org, project)
}

async fn new_chat(w: &World, token: &str, at: &(String, String), model: &str) -> String {
    let path = format!("/api/v1/organizations/{}/projects/{}/chats", at.0, at.1);
    let body =
        json!({"model": model, "system_prompt": "Be brief.", "parameters": {"temperature": 0.2}});
    let (status, chat) = w.app.by(token).post(&path, body).await;
    assert_eq!(status, 201, "{chat}");
    format!("{path}/{}", chat["id"].as_str().unwrap())
}

/// The events of a playground stream: `(event name, data)`; and how long the
/// first piece took.
async fn send(
    w: &World,
    token: &str,
    chat: &str,
    text: &str,
) -> (u16, Vec<(String, String)>, Duration) {
    let started = Instant::now();
    let response = w
        .app
        .client
        .post(w.app.url(&format!("{chat}/messages")))
        .header("authorization", token)
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap();
        return (status, vec![("error".into(), body)], started.elapsed());
    }
    let mut first = None;
    let mut text = String::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        first.get_or_insert_with(|| started.elapsed());
        text.push_str(&String::from_utf8_lossy(&piece.unwrap()));
    }
    let events = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("chunk");
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("");
            (name.to_string(), data.to_string())
        })
        .collect();
    (status, events, first.unwrap_or_default())
}

#[tokio::test]
async fn a_message_streams_the_answer_and_both_are_stored_and_counted() {
    let w = World::new().await;
    let token = w.token("ada@example.com").await;
    let at = ada_project(&w, &token).await;
    let chat = new_chat(&w, &token, &at, "gpt").await;
    let started = Instant::now();
    let (status, events, first) = send(&w, &token, &chat, "Hi there").await;
    assert_eq!(status, 200, "{events:?}");
    // The first piece came before the upstream finished (it pauses 1.5 s).
    assert!(
        first < Duration::from_millis(1200),
        "first piece after {first:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(events.first().unwrap().0, "user_message", "{events:?}");
    let text: String = events
        .iter()
        .filter(|(name, data)| name == "chunk" && data.starts_with('{'))
        .filter_map(|(_, data)| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello");
    let (name, stored) = events.last().unwrap();
    assert_eq!(name, "message", "{events:?}");
    let stored: Value = serde_json::from_str(stored).unwrap();
    assert_eq!(stored["content"], "Hello");
    assert_eq!(
        (
            stored["prompt_tokens"].as_u64(),
            stored["completion_tokens"].as_u64()
        ),
        (Some(10), Some(20))
    );
    assert!(
        (stored["cost_usd"].as_f64().unwrap() - 0.00005).abs() < 1e-9,
        "{stored}"
    );
    assert_eq!(stored["partial"], false);
    // Both messages are kept, in order.
    let auth = Some(("authorization", token.as_str()));
    let (_, messages) = w.app.get(&format!("{chat}/messages"), auth).await;
    let items = messages["items"].as_array().unwrap();
    let roles: Vec<_> = items.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant"]);
    // The upstream got the system prompt, the history and the parameters.
    let sent = &w.seen_bodies()[0];
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["temperature"], 0.2);
    // Usage and request logs show the call as Ada's, from the playground.
    w.flush().await;
    let (_, logs) = w.app.get("/api/v1/request-logs", auth).await;
    let log = &logs["items"][0];
    assert_eq!(log["api"], "playground", "{logs}");
    assert_eq!(log["user_id"], w.ada.id.to_string());
    assert_eq!(log["id"], stored["request_id"], "{log} {stored}");
    let (_, usage) = w.app.get("/api/v1/usage?group_by=model", auth).await;
    let row = &usage["items"][0];
    assert_eq!(
        (row["group"].as_str(), row["requests"].as_u64()),
        (Some("gpt"), Some(1)),
        "{usage}"
    );
    assert_eq!(row["prompt_tokens"], 10, "{usage}");
    // A second message carries the first exchange as history.
    send(&w, &token, &chat, "And again").await;
    let sent = &w.seen_bodies()[1];
    let contents: Vec<_> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents, ["Be brief.", "Hi there", "Hello", "And again"]);
}

#[tokio::test]
async fn the_playground_refuses_what_the_gateway_refuses_and_stores_nothing() {
    let w = World::new().await;
    let token = w.token("ada@example.com").await;
    let at = ada_project(&w, &token).await;
    let auth = Some(("authorization", token.as_str()));
    // A restricted model without a subscription: 403, as on the gateway.
    let chat = new_chat(&w, &token, &at, "restricted").await;
    let (status, _, _) = send(&w, &token, &chat, "Hi").await;
    assert_eq!(status, 403);
    let (status, _, _) = send(
        &w,
        &token,
        &new_chat(&w, &token, &at, "no-such-model").await,
        "Hi",
    )
    .await;
    assert_eq!(status, 404);
    let (_, messages) = w.app.get(&format!("{chat}/messages"), auth).await;
    assert!(
        messages["items"].as_array().unwrap().is_empty(),
        "{messages}"
    );
    // A spent budget stops the playground too.
    let admin = w.token("admin@example.com").await;
    let limits = json!({"budget": {"max_usd": 0.00001, "period": "month"}});
    let path = format!("/api/v1/users/{}", w.ada.id);
    let (status, body) = w
        .app
        .by(&admin)
        .patch(&path, json!({"limits": limits}))
        .await;
    assert_eq!(status, 200, "{body}");
    let chat = new_chat(&w, &token, &at, "gpt").await;
    let (status, events, _) = send(&w, &token, &chat, "Hi").await;
    assert_eq!(status, 429, "{events:?}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_answer_leaves_a_partial_answer_and_a_settled_call() {
    let w = World::new().await;
    let token = w.token("ada@example.com").await;
    let at = ada_project(&w, &token).await;
    let chat = new_chat(&w, &token, &at, "gpt").await;
    let response = w
        .app
        .client
        .post(w.app.url(&format!("{chat}/messages")))
        .header("authorization", &token)
        .json(&json!({"content": "Hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Read until the first chunk of the answer, then go away.
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("Hel") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);
    let auth = Some(("authorization", token.as_str()));
    let path = format!("{chat}/messages");
    let mut items = Vec::new();
    for _ in 0..50 {
        let (_, messages) = w.app.get(&path, auth).await;
        items = messages["items"].as_array().unwrap().clone();
        if items.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[1]["partial"], true, "{items:?}");
    assert_eq!(items[1]["content"], "Hel");
    // The call was settled with what passed (estimated: the usage chunk
    // never came), and logged under the answer's request ID.
    w.flush().await;
    let (_, logs) = w.app.get("/api/v1/request-logs", auth).await;
    let log = &logs["items"][0];
    assert_eq!(log["api"], "playground", "{logs}");
    assert_eq!(log["tokens_estimated"], true, "{logs}");
    assert_eq!(log["id"], items[1]["request_id"]);
}

#[tokio::test]
async fn the_longest_texts_the_limits_allow_are_stored_and_sent_whole() {
    let w = World::new().await;
    let token = w.token("ada@example.com").await;
    let auth = Some(("authorization", token.as_str()));
    let at = ada_project(&w, &token).await;
    let chat = new_chat(&w, &token, &at, "gpt").await;
    // A file of 256 KiB (65 536 four-byte characters), and a message of
    // 65 536 characters, half of them written escaped in JSON.
    let file = "\u{1d11e}".repeat(65_536);
    let body = json!({"name": "score.txt", "content": file});
    let (status, added) = w.app.post(&format!("{chat}/files"), auth, body).await;
    assert_eq!(status, 201, "{added}");
    let message = "\"\n".repeat(32_768);
    let (status, events, _) = send(&w, &token, &chat, &message).await;
    assert_eq!(status, 200, "{events:?}");
    let sent = &w.seen_bodies()[0];
    assert_eq!(
        sent["messages"][1]["content"].as_str().unwrap().len(),
        262_144 + 27
    );
    assert_eq!(sent["messages"][2]["content"], message.as_str());
    let (_, listed) = w.app.get(&format!("{chat}/messages"), auth).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "file, message, answer");
    assert_eq!(items[0]["content"], file.as_str());
    assert_eq!(items[0]["content_raw"]["name"], "score.txt");
    assert_eq!(items[1]["content"], message.as_str());
    assert_eq!(items[2]["content"], "Hello");
    // One character more is refused, and nothing is stored.
    let (status, events, _) = send(&w, &token, &chat, &"x".repeat(65_537)).await;
    assert_eq!(status, 400, "{events:?}");
    let (_, listed) = w.app.get(&format!("{chat}/messages"), auth).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
}
