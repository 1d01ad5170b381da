//! Translation between OpenAI chat completions and Anthropic messages, so an
//! unchanged client of either API reaches models on endpoints of the other:
//! requests, answers, and streams event by event.
//!
//! What has no counterpart is refused with a clear message (`n > 1`, content
//! parts other than text and images) or dropped when it only tunes sampling
//! (`top_k`, `presence_penalty`, …). Calls of one API on an endpoint of the
//! same API never come here: they are forwarded byte for byte.

mod stream;

use gatehouse_core::usage::DEFAULT_MAX_TOKENS;
use serde_json::{Map, Value, json};

pub use self::stream::StreamTranslator;

/// Which way a call is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// An OpenAI chat completion sent to an Anthropic endpoint.
    ChatOverMessages,
    /// An Anthropic messages call sent to an OpenAI-compatible endpoint.
    MessagesOverChat,
}

impl Translation {
    /// The upstream request for `request` (the caller's JSON body), naming
    /// `upstream_model`. `Err` says what the caller sent that cannot be
    /// translated.
    pub fn request(self, request: &[u8], upstream_model: &str) -> Result<Vec<u8>, String> {
        let request: Value =
            serde_json::from_slice(request).map_err(|e| format!("the body is not JSON: {e}"))?;
        let translated = match self {
            Translation::ChatOverMessages => chat_to_messages(&request, upstream_model)?,
            Translation::MessagesOverChat => messages_to_chat(&request, upstream_model)?,
        };
        Ok(translated.to_string().into_bytes())
    }

    /// The caller's answer for the upstream's `answer`; `None` when the
    /// upstream's answer is not the JSON its API promises.
    pub fn answer(self, answer: &[u8], model: &str, created: i64) -> Option<Vec<u8>> {
        let answer: Value = serde_json::from_slice(answer).ok()?;
        let translated = match self {
            Translation::ChatOverMessages => message_to_completion(&answer, model, created),
            Translation::MessagesOverChat => completion_to_message(&answer, model),
        };
        Some(translated.to_string().into_bytes())
    }

    /// A translator for the upstream's event stream. `include_usage`: the
    /// OpenAI caller asked for the final usage chunk.
    pub fn stream(self, model: &str, created: i64, include_usage: bool) -> StreamTranslator {
        StreamTranslator::new(self, model, created, include_usage)
    }
}

// ---- requests ----

/// The caller's `field`, when it is an array (or absent).
fn array<'a>(value: &'a Value, field: &str) -> Result<&'a [Value], String> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("`{field}` must be an array")),
    }
}

/// Copies the fields both APIs name alike.
fn copy(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        if let Some(value) = from.get(*field).filter(|v| !v.is_null()) {
            to.insert((*field).to_string(), value.clone());
        }
    }
}

/// Text of an OpenAI message content (a string, or text parts).
fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Text of an Anthropic content (a string, or blocks).
fn anthropic_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content (a string or parts) as Anthropic blocks.
fn openai_content_to_blocks(content: &Value) -> Result<Vec<Value>, String> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part["type"].as_str() {
                Some("text") => Ok(json!({"type": "text", "text": part["text"]})),
                Some("image_url") => {
                    let url = part["image_url"]["url"]
                        .as_str()
                        .or(part["image_url"].as_str())
                        .ok_or("an image_url part needs a url")?;
                    Ok(json!({"type": "image", "source": image_source(url)?}))
                }
                other => Err(format!(
                    "content parts of type {} cannot be sent to this model",
                    other.unwrap_or("(none)")
                )),
            })
            .collect(),
        _ => Err("a message's content must be a string or an array of parts".into()),
    }
}

/// An image URL (`data:` or `http(s):`) as an Anthropic image source.
fn image_source(url: &str) -> Result<Value, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest
            .split_once(";base64,")
            .ok_or("a data: image URL must be base64")?;
        return Ok(json!({"type": "base64", "media_type": media_type, "data": data}));
    }
    Ok(json!({"type": "url", "url": url}))
}

/// Appends a message, merging it into the previous one of the same role
/// (Anthropic alternates user and assistant turns; parallel tool results go
/// in one user turn).
fn push_turn(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(content) = last["content"].as_array_mut()
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

fn chat_to_messages(request: &Value, upstream_model: &str) -> Result<Value, String> {
    if request.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err("`n` greater than 1 is not supported for this model".into());
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for message in array(request, "messages")? {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message["role"].as_str() {
            Some("system" | "developer") => {
                system.push(json!({"type": "text", "text": openai_text(content)}));
            }
            Some("user") => push_turn(&mut messages, "user", openai_content_to_blocks(content)?),
            Some("assistant") => {
                let mut blocks = openai_content_to_blocks(content)?;
                for call in array(message, "tool_calls")? {
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call["id"],
                        "name": call["function"]["name"],
                        "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
                    }));
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            Some("tool") => push_turn(
                &mut messages,
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": openai_text(content),
                })],
            ),
            other => {
                return Err(format!(
                    "messages of role {} cannot be sent to this model",
                    other.unwrap_or("(none)")
                ));
            }
        }
    }
    let max_tokens = request
        .get("max_completion_tokens")
        .or(request.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    copy(request, &mut out, &["temperature", "top_p", "stream"]);
    match request.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    let tools: Vec<Value> = array(request, "tools")?
        .iter()
        .filter(|t| t["type"] == "function")
        .map(|t| {
            let f = &t["function"];
            let mut tool = json!({
                "name": f["name"],
                "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
            });
            if let Some(description) = f.get("description") {
                tool["description"] = description.clone();
            }
            tool
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        let mut choice = match request.get("tool_choice") {
            Some(Value::String(c)) if c == "none" => json!({"type": "none"}),
            Some(Value::String(c)) if c == "required" => json!({"type": "any"}),
            Some(Value::Object(c)) => json!({"type": "tool", "name": c["function"]["name"]}),
            _ => json!({"type": "auto"}),
        };
        if request["parallel_tool_calls"] == false {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = request.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(out))
}

/// Anthropic blocks of a user turn as OpenAI messages: tool results become
/// `tool` messages (first: they answer the previous assistant turn), the
/// rest one user message.
fn user_turn_to_messages(content: &Value, out: &mut Vec<Value>) -> Result<(), String> {
    let Value::Array(blocks) = content else {
        out.push(json!({"role": "user", "content": anthropic_text(content)}));
        return Ok(());
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
            Some("image") => {
                let source = &block["source"];
                let url = match source["type"].as_str() {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source["media_type"].as_str().unwrap_or("image/png"),
                        source["data"].as_str().unwrap_or_default()
                    ),
                    Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
                    _ => return Err("an image block needs a base64 or url source".into()),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_result") => out.push(json!({
                "role": "tool",
                "tool_call_id": block["tool_use_id"],
                "content": anthropic_text(block.get("content").unwrap_or(&Value::Null)),
            })),
            other => {
                return Err(format!(
                    "content blocks of type {} cannot be sent to this model",
                    other.unwrap_or("(none)")
                ));
            }
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// An Anthropic assistant turn as one OpenAI assistant message.
fn assistant_turn_to_message(content: &Value) -> Value {
    let Value::Array(blocks) = content else {
        return json!({"role": "assistant", "content": anthropic_text(content)});
    };
    let text = anthropic_text(content);
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            json!({
                "id": b["id"],
                "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

fn messages_to_chat(request: &Value, upstream_model: &str) -> Result<Value, String> {
    let mut messages = Vec::new();
    if let Some(system) = request.get("system").filter(|s| !s.is_null()) {
        messages.push(json!({"role": "system", "content": anthropic_text(system)}));
    }
    for message in array(request, "messages")? {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message["role"].as_str() {
            Some("user") => user_turn_to_messages(content, &mut messages)?,
            Some("assistant") => messages.push(assistant_turn_to_message(content)),
            other => {
                return Err(format!(
                    "messages of role {} are not part of the messages API",
                    other.unwrap_or("(none)")
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    copy(
        request,
        &mut out,
        &["max_tokens", "temperature", "top_p", "stream"],
    );
    if request["stream"] == true {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(stops) = request.get("stop_sequences").filter(|s| s.is_array()) {
        out.insert("stop".into(), stops.clone());
    }
    let tools: Vec<Value> = array(request, "tools")?
        .iter()
        .map(|t| {
            let mut function = json!({
                "name": t["name"],
                "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
            });
            if let Some(description) = t.get("description") {
                function["description"] = description.clone();
            }
            json!({"type": "function", "function": function})
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        let choice = &request["tool_choice"];
        let mapped = match choice["type"].as_str() {
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => Some(json!({"type": "function", "function": {"name": choice["name"]}})),
            Some("auto") => Some(json!("auto")),
            _ => None,
        };
        if let Some(mapped) = mapped {
            out.insert("tool_choice".into(), mapped);
        }
        if choice["disable_parallel_tool_use"] == true {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(user) = request["metadata"]["user_id"].as_str() {
        out.insert("user".into(), json!(user));
    }
    Ok(Value::Object(out))
}

// ---- answers ----

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's input tokens, cache reads and writes included.
fn anthropic_input_tokens(usage: &Value) -> u64 {
    [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ]
    .iter()
    .filter_map(|f| usage[*f].as_u64())
    .sum()
}

fn message_to_completion(answer: &Value, model: &str, created: i64) -> Value {
    let content = answer.get("content").unwrap_or(&Value::Null);
    let mut message = assistant_turn_to_message(content);
    if message["content"].is_null() && message.get("tool_calls").is_none() {
        message["content"] = json!("");
    }
    let input = anthropic_input_tokens(&answer["usage"]);
    let output = answer["usage"]["output_tokens"].as_u64().unwrap_or(0);
    json!({
        "id": answer["id"],
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(answer["stop_reason"].as_str().unwrap_or("end_turn")),
        }],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    })
}

fn completion_to_message(answer: &Value, model: &str) -> Value {
    let choice = &answer["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        for call in calls {
            let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
            content.push(json!({
                "type": "tool_use",
                "id": call["id"],
                "name": call["function"]["name"],
                "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
            }));
        }
    }
    json!({
        "id": answer["id"],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": {
            "input_tokens": answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            "output_tokens": answer["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(t: Translation, body: Value) -> Value {
        serde_json::from_slice(&t.request(body.to_string().as_bytes(), "up").unwrap()).unwrap()
    }

    #[test]
    fn chat_requests_become_messages_requests() {
        let out = request(
            Translation::ChatOverMessages,
            json!({
                "model": "claude", "max_completion_tokens": 50, "temperature": 0.5, "stop": "END",
                "user": "u1", "stream": true, "presence_penalty": 1,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                ],
                "tools": [{"type": "function", "function": {"name": "look", "description": "Looks", "parameters": {"type": "object"}}}],
                "tool_choice": "required",
            }),
        );
        assert_eq!(
            out,
            json!({
                "model": "up", "max_tokens": 50, "temperature": 0.5, "stream": true,
                "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
                "system": [{"type": "text", "text": "Be brief."}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_1", "name": "look", "input": {"x": 1}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "a cat"},
                    ]},
                ],
                "tools": [{"name": "look", "description": "Looks", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any"},
            })
        );
        // Anthropic needs max_tokens: a default when the caller gives none.
        let out = request(
            Translation::ChatOverMessages,
            json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}),
        );
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn what_has_no_counterpart_is_refused_clearly() {
        let t = Translation::ChatOverMessages;
        let refuse = |body: Value| t.request(body.to_string().as_bytes(), "up").unwrap_err();
        assert!(refuse(json!({"messages": [], "n": 2})).contains("`n`"));
        assert!(
            refuse(json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}))
                .contains("input_audio")
        );
        assert!(refuse(json!({"messages": "hi"})).contains("`messages` must be an array"));
        assert!(t.request(b"[1,", "up").unwrap_err().contains("not JSON"));
        let t = Translation::MessagesOverChat;
        assert!(
            t.request(
                json!({"messages": [{"role": "user", "content": [{"type": "document"}]}]})
                    .to_string()
                    .as_bytes(),
                "up"
            )
            .unwrap_err()
            .contains("document")
        );
    }

    #[test]
    fn messages_requests_become_chat_requests() {
        let out = request(
            Translation::MessagesOverChat,
            json!({
                "model": "llama", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief."}],
                "stop_sequences": ["END"], "stream": true, "top_k": 5,
                "metadata": {"user_id": "u1"},
                "messages": [
                    {"role": "user", "content": "Look at this"},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "tu_1", "name": "look", "input": {"x": 1}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": "a cat"}]},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    ]},
                ],
                "tools": [{"name": "look", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "look", "disable_parallel_tool_use": true},
            }),
        );
        assert_eq!(
            out,
            json!({
                "model": "up", "max_tokens": 64, "stream": true,
                "stream_options": {"include_usage": true},
                "stop": ["END"], "user": "u1",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Look at this"},
                    {"role": "assistant", "content": "Looking.", "tool_calls": [
                        {"id": "tu_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "tu_1", "content": "a cat"},
                    {"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    ]},
                ],
                "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "look"}},
                "parallel_tool_calls": false,
            })
        );
    }

    #[test]
    fn answers_are_translated_both_ways() {
        let message = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "up",
            "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "tu_1", "name": "look", "input": {"x": 1}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 7, "cache_read_input_tokens": 3, "output_tokens": 2},
        });
        let out: Value = serde_json::from_slice(
            &Translation::ChatOverMessages
                .answer(message.to_string().as_bytes(), "claude", 1700)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 1700, "model": "claude",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Calling.",
                    "tool_calls": [{"id": "tu_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}],
                }}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            })
        );
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "up",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hello"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20},
        });
        let out: Value = serde_json::from_slice(
            &Translation::MessagesOverChat
                .answer(completion.to_string().as_bytes(), "llama", 0)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "llama",
                "content": [{"type": "text", "text": "Hello"}],
                "stop_reason": "max_tokens", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 20},
            })
        );
        assert_eq!(
            Translation::MessagesOverChat.answer(b"<html>", "m", 0),
            None
        );
    }

    /// The data payloads of an event stream, parsed.
    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(json!(d)))
            .collect()
    }

    #[test]
    fn anthropic_streams_become_openai_chunks_even_when_split_mid_line() {
        let upstream = [
            json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu_1", "name": "look"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
            json!({"type": "message_stop"}),
        ]
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect::<String>();
        let mut t = Translation::ChatOverMessages.stream("claude", 1700, true);
        let mut out = Vec::new();
        for piece in upstream.as_bytes().chunks(7) {
            out.extend(t.feed(piece));
        }
        out.extend(t.finish());
        let chunks = events(&out);
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0).map(|c| &c["delta"]))
            .collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
        assert_eq!(deltas[1], &json!({"content": "Hi"}));
        assert_eq!(deltas[2]["tool_calls"][0]["id"], "tu_1");
        assert_eq!(
            deltas[3]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":"
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[4]["model"], "claude");
        assert_eq!(
            chunks[5]["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12})
        );
        assert_eq!(chunks[6], json!("[DONE]"));
        assert_eq!(chunks.len(), 7, "finish() after message_stop adds nothing");
    }

    #[test]
    fn openai_streams_become_anthropic_events_and_end_even_without_done() {
        let chunk = |delta: Value, finish: Value| json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        let upstream = [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "look", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 20}}),
        ]
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect::<String>();
        let mut t = Translation::MessagesOverChat.stream("llama", 0, false);
        let mut out = t.feed(upstream.as_bytes());
        out.extend(t.finish());
        let text = String::from_utf8(out.clone()).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let events = events(&out);
        assert_eq!(events[0]["message"]["model"], "llama");
        assert_eq!(events[2]["delta"]["text"], "Hel");
        assert_eq!(events[5]["content_block"]["name"], "look");
        assert_eq!(events[5]["index"], 1);
        assert_eq!(events[6]["delta"]["partial_json"], "{}");
        assert_eq!(events[8]["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            events[8]["usage"],
            json!({"input_tokens": 10, "output_tokens": 20})
        );
        assert!(t.finish().is_empty(), "the stream ends once");
    }
}
