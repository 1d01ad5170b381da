"""Calls Gatehouse's Anthropic-shaped endpoint with the official `anthropic`
SDK the way code written against Anthropic does: `messages.create`, and
`messages.stream` with its text stream and final message, for a model behind
an Anthropic endpoint and one behind an OpenAI endpoint (translated); reads
the first model with `models.retrieve` and counts a request's tokens with
`messages.count_tokens`; then an unknown model and an unknown
key, which the SDK must raise as its own errors.

Usage: anthropic_messages.py <gatehouse base URL> <API key> <model> [<model> ...]
Prints one JSON line per call.
"""

import json
import sys

import anthropic

base, key, models = sys.argv[1], sys.argv[2], sys.argv[3:]
client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
hello = [{"role": "user", "content": "Hi"}]
for model in models:
    message = client.messages.create(model=model, max_tokens=50, messages=hello)
    print(json.dumps({
        "model": model,
        "stream": False,
        "text": "".join(b.text for b in message.content if b.type == "text"),
        "stop_reason": message.stop_reason,
        "usage": [message.usage.input_tokens, message.usage.output_tokens],
    }))
    with client.messages.stream(model=model, max_tokens=50, messages=hello) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    print(json.dumps({
        "model": model,
        "stream": True,
        "text": text,
        "stop_reason": final.stop_reason,
        "usage": [final.usage.input_tokens, final.usage.output_tokens],
    }))
model = client.models.retrieve(models[0])
print(json.dumps({"retrieved": model.id, "type": model.type}))
counted = client.messages.count_tokens(model=models[0], messages=hello)
print(json.dumps({"counted": models[0], "input_tokens": counted.input_tokens}))
for name, call in [
    ("unknown model", lambda: client.messages.create(model="no-such-model", max_tokens=5, messages=hello)),
    ("unknown key", lambda: anthropic.Anthropic(base_url=base, api_key="ak_" + "x" * 32, max_retries=0)
        .messages.create(model=models[0], max_tokens=5, messages=hello)),
]:
    try:
        call()
        print(json.dumps({"error": name, "raised": None}))
    except anthropic.APIStatusError as e:
        print(json.dumps({"error": name, "raised": type(e).__name__, "status": e.status_code,
                          "type": e.body["error"]["type"] if isinstance(e.body, dict) else None}))
