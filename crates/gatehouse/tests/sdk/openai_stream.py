"""Streams a chat completion through Gatehouse with the official `openai` SDK,
reading every chunk the way most code written against OpenAI does
(`chunk.choices[0].delta.content`), without and with `include_usage`.

Usage: openai_stream.py <gatehouse base URL> <API key> <model>
Prints one JSON line per run: {"include_usage", "text", "usage"}.
"""

import json
import sys

import openai

base, key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
for include_usage in (False, True):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        **options,
    )
    text, usage = "", None
    for chunk in stream:
        if include_usage and not chunk.choices:
            # Asked for: the usage-only chunk OpenAI sends last.
            usage = chunk.usage.model_dump()
            continue
        text += chunk.choices[0].delta.content or ""
    print(json.dumps({"include_usage": include_usage, "text": text, "usage": usage}))
