//! The operator's command line: `gatehouse users|keys|models|endpoints …`.
//!
//! Every command is a call of the REST API, so it is checked, authorized and
//! audited like any other. With `--url` (or `GATEHOUSE_URL`) and `--token`
//! (or `GATEHOUSE_TOKEN`: a JWT, session token or management-scoped API key)
//! it talks to a running server. Without a URL it opens the configured store
//! itself, serves the API on a loopback port for the one command, and acts as
//! the first admin; when a server holds the embedded store it says to pass
//! `--url` or to stop that server.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Gatehouse;
use crate::config::Config;

/// One command: a method, a path, maybe a body, and how to show the answer.
pub struct Call {
    pub method: reqwest::Method,
    pub path: String,
    pub body: Option<Value>,
    /// Columns of the table (fields of each item, or of the single answer).
    pub columns: &'static [&'static str],
    /// A list: read every page.
    pub list: bool,
}

impl Call {
    pub fn get_list(path: impl Into<String>, columns: &'static [&'static str]) -> Self {
        Call {
            method: reqwest::Method::GET,
            path: path.into(),
            body: None,
            columns,
            list: true,
        }
    }

    pub fn send(
        method: reqwest::Method,
        path: impl Into<String>,
        body: Option<Value>,
        columns: &'static [&'static str],
    ) -> Self {
        Call {
            method,
            path: path.into(),
            body,
            columns,
            list: false,
        }
    }
}

/// Where the command goes.
pub enum Target {
    Server { url: String, token: String },
    Store(Box<Config>),
}

/// Runs `call` against `target`; the answer as a table, or as JSON.
pub async fn run(call: Call, target: Target, as_json: bool) -> anyhow::Result<String> {
    let answer = match target {
        Target::Server { url, token } => send(&url, &token, &call).await?,
        Target::Store(config) => {
            let mut config = *config;
            // For this command only: loopback, any free port.
            let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            config.server.http_addr = loopback;
            config.server.grpc_addr = loopback;
            let server = Gatehouse::build(&config).await.map_err(|e| {
                let text = format!("{e:#}");
                if text.contains("already open in another process") {
                    anyhow::anyhow!(
                        "a server holds this store: pass --url and --token (or GATEHOUSE_URL and GATEHOUSE_TOKEN) to use it, or stop it first"
                    )
                } else {
                    e
                }
            })?;
            let url = format!("http://{}", server.http_addr()?);
            let admin = server
                .services
                .accounts
                .first_admin()
                .await?
                .context("the store has no first admin to act as: pass --url and --token")?;
            let token = server.services.accounts.token_for_operator(&admin)?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(server.run_until_stopped(async move {
                let _ = stopped.await;
            }));
            let answer = send(&url, &token, &call).await;
            let _ = stop.send(());
            serving.await??;
            answer?
        }
    };
    Ok(if as_json {
        serde_json::to_string_pretty(&answer)? + "\n"
    } else {
        table(&answer, call.columns)
    })
}

/// Sends the call; follows `next_cursor` to the end of a list.
async fn send(url: &str, token: &str, call: &Call) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = url.trim_end_matches('/');
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = call.path.clone();
        if call.list {
            let sep = if path.contains('?') { '&' } else { '?' };
            path = format!("{path}{sep}limit=500");
            if let Some(c) = &cursor {
                path = format!("{path}&cursor={c}");
            }
        }
        let mut request = client
            .request(call.method.clone(), format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let text = response.text().await?;
        let value: Value = if text.is_empty() {
            json!({"status": status.as_u16()})
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            bail!("{} {}: {status}: {message}", call.method, call.path);
        }
        if !call.list {
            return Ok(value);
        }
        items.extend(value["items"].as_array().cloned().unwrap_or_default());
        match value["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(Value::Array(items)),
        }
    }
}

/// A plain-text table of `columns` for a list, or of one answer.
fn table(answer: &Value, columns: &[&str]) -> String {
    let rows: Vec<&Value> = match answer {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let cell = |row: &Value, column: &str| match &row[column] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(row, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_show_lists_and_nulls() {
        let rows = json!([
            {"id": "1", "email": "ada@example.com", "roles": ["user", "admin"], "x": null},
            {"id": "22", "email": "b@example.com", "roles": ["user"], "x": 3},
        ]);
        assert_eq!(
            table(&rows, &["id", "email", "roles", "x"]),
            "ID  EMAIL            ROLES       X\n\
             1   ada@example.com  user,admin  -\n\
             22  b@example.com    user        3\n"
        );
    }
}
