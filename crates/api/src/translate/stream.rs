//! Streams translated event by event: Anthropic's events into OpenAI chunks
//! and OpenAI chunks into Anthropic's events, as the upstream sends them.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::sse::DataLines;

/// Turns the upstream's server-sent events into the caller's, as they come.
pub struct StreamTranslator {
    /// The upstream's event lines, read as they complete.
    lines: DataLines,
    state: State,
}

enum State {
    ToChunks(ToChunks),
    ToEvents(ToEvents),
}

impl StreamTranslator {
    pub(super) fn new(
        translation: Translation,
        model: &str,
        created: i64,
        include_usage: bool,
    ) -> Self {
        StreamTranslator {
            lines: DataLines::default(),
            state: match translation {
                Translation::ChatOverMessages => State::ToChunks(ToChunks {
                    id: String::new(),
                    model: model.to_string(),
                    created,
                    include_usage,
                    tools: HashMap::new(),
                    usage: (0, 0),
                    done: false,
                }),
                Translation::MessagesOverChat => State::ToEvents(ToEvents {
                    model: model.to_string(),
                    started: false,
                    open: None,
                    next_block: 0,
                    stop_reason: None,
                    usage: (0, 0),
                    done: false,
                }),
            },
        }
    }

    /// The caller's bytes for the upstream's `chunk` (possibly none yet).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let state = &mut self.state;
        self.lines.feed(chunk, |data| {
            let data = String::from_utf8_lossy(data);
            match state {
                State::ToChunks(t) => t.data(&data, &mut out),
                State::ToEvents(t) => t.data(&data, &mut out),
            }
        });
        out
    }

    /// What the caller still needs when the upstream's stream ends (a stream
    /// that ended without its closing events still ends properly).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match &mut self.state {
            State::ToChunks(t) => t.finish(&mut out),
            State::ToEvents(t) => t.finish(&mut out),
        }
        out
    }
}

/// Anthropic events → OpenAI chunks.
struct ToChunks {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    /// Content block index → tool call index.
    tools: HashMap<u64, usize>,
    usage: (u64, u64),
    done: bool,
}

impl ToChunks {
    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
    }

    fn data(&mut self, data: &str, out: &mut Vec<u8>) {
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match event["type"].as_str() {
            Some("message_start") => {
                let message = &event["message"];
                self.id = message["id"].as_str().unwrap_or_default().to_string();
                self.usage.0 = anthropic_input_tokens(&message["usage"]);
                self.usage.1 = message["usage"]["output_tokens"].as_u64().unwrap_or(0);
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            Some("content_block_start") if event["content_block"]["type"] == "tool_use" => {
                let index = self.tools.len();
                self.tools
                    .insert(event["index"].as_u64().unwrap_or(0), index);
                let block = &event["content_block"];
                self.chunk(
                    json!({"tool_calls": [{
                        "index": index, "id": block["id"], "type": "function",
                        "function": {"name": block["name"], "arguments": ""},
                    }]}),
                    None,
                    out,
                );
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => self.chunk(json!({"content": delta["text"]}), None, out),
                    Some("input_json_delta") => {
                        let block = event["index"].as_u64().unwrap_or(0);
                        let index = self.tools.get(&block).copied().unwrap_or(0);
                        self.chunk(
                            json!({"tool_calls": [{
                                "index": index,
                                "function": {"arguments": delta["partial_json"]},
                            }]}),
                            None,
                            out,
                        );
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(n) = event["usage"]["output_tokens"].as_u64() {
                    self.usage.1 = n;
                }
                if let Some(n) = event["usage"]["input_tokens"].as_u64() {
                    self.usage.0 = self.usage.0.max(n);
                }
                let reason = finish_reason(event["delta"]["stop_reason"].as_str().unwrap_or(""));
                self.chunk(json!({}), Some(reason), out);
            }
            Some("message_stop") => self.finish(out),
            Some("error") => {
                let error = json!({"error": {
                    "message": event["error"]["message"],
                    "type": event["error"]["type"],
                }});
                out.extend_from_slice(format!("data: {error}\n\n").as_bytes());
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if self.include_usage {
            let (input, output) = self.usage;
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
            });
            out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// The content block an OpenAI stream is filling.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text(usize),
    /// (content block index, OpenAI tool call index)
    Tool(usize, u64),
}

impl Block {
    fn index(self) -> usize {
        match self {
            Block::Text(i) | Block::Tool(i, _) => i,
        }
    }
}

/// OpenAI chunks → Anthropic events.
struct ToEvents {
    model: String,
    started: bool,
    open: Option<Block>,
    next_block: usize,
    stop_reason: Option<&'static str>,
    usage: (u64, u64),
    done: bool,
}

fn event(out: &mut Vec<u8>, event: Value) {
    let name = event["type"].as_str().unwrap_or("event").to_string();
    out.extend_from_slice(format!("event: {name}\ndata: {event}\n\n").as_bytes());
}

impl ToEvents {
    fn start(&mut self, id: &Value, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        event(
            out,
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.open.take() {
            event(
                out,
                json!({"type": "content_block_stop", "index": block.index()}),
            );
        }
    }

    fn open_block(&mut self, block: Block, content_block: Value, out: &mut Vec<u8>) {
        self.close_block(out);
        event(
            out,
            json!({"type": "content_block_start", "index": block.index(), "content_block": content_block}),
        );
        self.open = Some(block);
        self.next_block += 1;
    }

    fn data(&mut self, data: &str, out: &mut Vec<u8>) {
        if data == "[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(error) = chunk.get("error") {
            event(
                out,
                json!({"type": "error", "error": {"type": "api_error", "message": error["message"]}}),
            );
            return;
        }
        self.start(&chunk["id"], out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = (
                usage["prompt_tokens"].as_u64().unwrap_or(0),
                usage["completion_tokens"].as_u64().unwrap_or(0),
            );
        }
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(Block::Text(_))) {
                let block = Block::Text(self.next_block);
                self.open_block(block, json!({"type": "text", "text": ""}), out);
            }
            let index = self.open.map_or(0, Block::index);
            event(
                out,
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": text}}),
            );
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for call in calls {
                let call_index = call["index"].as_u64().unwrap_or(0);
                let same = matches!(self.open, Some(Block::Tool(_, i)) if i == call_index);
                if !same {
                    let block = Block::Tool(self.next_block, call_index);
                    let content_block = json!({
                        "type": "tool_use", "id": call["id"],
                        "name": call["function"]["name"], "input": {},
                    });
                    self.open_block(block, content_block, out);
                }
                if let Some(arguments) = call["function"]["arguments"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                {
                    let index = self.open.map_or(0, Block::index);
                    event(
                        out,
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                    );
                }
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(stop_reason(reason));
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.done, true) || !self.started {
            return;
        }
        self.close_block(out);
        let (input, output) = self.usage;
        event(
            out,
            json!({"type": "message_delta",
                   "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                   "usage": {"input_tokens": input, "output_tokens": output}}),
        );
        event(out, json!({"type": "message_stop"}));
    }
}
