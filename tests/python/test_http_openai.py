"""ds4serve against the official `openai` Python SDK, on the demo model (random weights, real
tokenizer, so texts are gibberish but deterministic for a seed).

One server (with an API key) serves every test of this module. Checked: models list/retrieve;
chat non-stream and stream (role with the first token, one token per chunk, usage chunk, stream
text equal to the non-stream text for the same seed); seed reproducibility; max_tokens; stop
strings cut the text exactly; completions (stream, echo, token prompts); a full tool-call round
trip (forced call -> tool result -> next turn, rendered history checked through /tokenize);
logprobs; and errors raising the SDK's matching exception classes.
"""
import json

import openai
import pytest

from ds4serve_harness import MODEL_NAME, Ds4Server

API_KEY = "sdk-test-key"
NO_THINK = {"reasoning_effort": "none"}
TOOLS = [
    {"type": "function", "function": {"name": "get_time", "description": "Current UTC time",
                                      "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Ds4Server("--api-key", API_KEY, "--max-body-bytes", 1 << 20, log_dir=tmp_path_factory.mktemp("sdk"))
    with s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def chat(client, content="Tell me a story.", **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("extra_body", NO_THINK)
    return client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": content}], **kw)


def test_models(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    assert models[0].model_extra["max_model_len"] == 8192
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_non_stream(client, server):
    r = chat(client, max_tokens=6, seed=1)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.finish_reason in ("length", "stop")
    assert r.model == MODEL_NAME and r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert 1 <= r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # The prompt count is the chat template's: the same messages through /tokenize.
    status, tok = server.post_json("/tokenize", {"messages": [{"role": "user", "content": "Tell me a story."}],
                                                 "reasoning_effort": "none"},
                                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200 and tok["count"] == r.usage.prompt_tokens


def test_chat_stream_matches_non_stream(client):
    full = chat(client, max_tokens=10, seed=7, temperature=0.9)
    stream = chat(client, max_tokens=10, seed=7, temperature=0.9, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content, "the first chunk carries the first token with the role"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == full.usage.completion_tokens
    assert len(text_chunks) <= usage.completion_tokens  # one token per chunk at most
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert "".join(c.choices[0].delta.content for c in text_chunks) == full.choices[0].message.content


def test_reasoning_goes_to_reasoning_content(client):
    r = chat(client, max_tokens=6, seed=3, extra_body={"reasoning_effort": "high"})
    msg = r.choices[0].message
    # A thinking prompt ends with <think>: the output is reasoning until the model writes </think>.
    assert msg.model_extra.get("reasoning_content"), msg


def test_seed_reproducibility(client):
    a = chat(client, seed=1234, temperature=1.0, max_tokens=8).choices[0].message.content
    b = chat(client, seed=1234, temperature=1.0, max_tokens=8).choices[0].message.content
    c = chat(client, seed=4321, temperature=1.0, max_tokens=8).choices[0].message.content
    assert a == b
    assert a != c


def test_max_tokens(client):
    for n in (1, 3):
        r = chat(client, max_tokens=n, extra_body={**NO_THINK, "ignore_eos": True})
        assert r.usage.completion_tokens == n and r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "x"}],
                                       max_completion_tokens=2, extra_body=NO_THINK)
    assert r.usage.completion_tokens == 2


def test_stop_strings(client):
    base = chat(client, temperature=0, max_tokens=16, extra_body={**NO_THINK, "ignore_eos": True}).choices[0].message.content
    assert len(base) >= 8, base
    stop = base[len(base) // 2:len(base) // 2 + 2]
    expected = base[:base.find(stop)]
    r = chat(client, temperature=0, max_tokens=16, stop=[stop], extra_body={**NO_THINK, "ignore_eos": True})
    assert r.choices[0].message.content == expected
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 16
    # Streaming cuts at the same place.
    s = chat(client, temperature=0, max_tokens=16, stop=stop, stream=True, extra_body={**NO_THINK, "ignore_eos": True})
    chunks = list(s)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions(client, server):
    r = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=6, seed=5,
                                  extra_body={"ignore_eos": True})
    assert r.object == "text_completion" and r.usage.completion_tokens == 6
    assert r.choices[0].finish_reason == "length"
    chunks = list(client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=6, seed=5,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage.completion_tokens == 6
    echo = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=6, seed=5, echo=True,
                                     extra_body={"ignore_eos": True})
    assert echo.choices[0].text == "Once upon a time" + r.choices[0].text
    # Token-id prompts are used as given (BOS + the same text tokens give the same output).
    status, tok = server.post_json("/tokenize", {"prompt": "Once upon a time", "add_special_tokens": False},
                                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200
    tokens = [0] + tok["tokens"]
    by_ids = client.completions.create(model=MODEL_NAME, prompt=tokens, max_tokens=6, seed=5,
                                       extra_body={"ignore_eos": True})
    assert by_ids.usage.prompt_tokens == r.usage.prompt_tokens
    assert by_ids.choices[0].text == r.choices[0].text


def test_tool_call_round_trip(client, server):
    messages = [{"role": "user", "content": "What time is it?"}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS, max_tokens=16,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_time" and json.loads(call.function.arguments) == {}
    assert call.id.startswith("call_")

    # Streamed: the call arrives as tool_calls deltas.
    deltas = [ch.choices[0].delta for ch in client.chat.completions.create(
        model=MODEL_NAME, messages=messages, tools=TOOLS, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_time"}}) if ch.choices]
    streamed = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert streamed[0].function.name == "get_time" and streamed[0].id.startswith("call_")
    assert "".join(tc.function.arguments or "" for tc in streamed) == "{}"

    # Next turn: the assistant's call and the tool's result go back; the server renders them.
    history = messages + [c.message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": call.id, "content": "12:34 UTC"}]
    follow = client.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS, max_tokens=4,
                                            extra_body=NO_THINK)
    assert follow.choices[0].finish_reason in ("length", "stop", "tool_calls")
    assert follow.usage.prompt_tokens > r.usage.prompt_tokens
    status, tok = server.post_json("/tokenize", {"messages": history, "tools": TOOLS, "reasoning_effort": "none"},
                                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200 and tok["count"] == follow.usage.prompt_tokens
    status, text = server.post_json("/detokenize", {"tokens": tok["tokens"]},
                                    headers={"Authorization": f"Bearer {API_KEY}"})
    prompt = text["prompt"]
    assert 'invoke name="get_time"' in prompt and "12:34 UTC" in prompt
    assert prompt.index('invoke name="get_time"') < prompt.index("12:34 UTC")

    # required / auto are accepted; none hides the tools from the prompt.
    for choice in ("required", "auto"):
        r2 = client.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS, tool_choice=choice,
                                            max_tokens=4)
        assert r2.choices[0].finish_reason in ("length", "stop", "tool_calls")
    none = client.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS, tool_choice="none",
                                          max_tokens=1)
    auto = client.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS, max_tokens=1)
    assert none.usage.prompt_tokens < auto.usage.prompt_tokens


def test_logprobs(client):
    r = chat(client, max_tokens=5, logprobs=True, top_logprobs=3, seed=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.logprob <= tops[0] + 1e-6 and entry.logprob <= 0


def test_errors_raise_matching_exceptions(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, temperature=5)
    assert e.value.param == "temperature" and e.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, top_p=0)
    assert e.value.param == "top_p"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=100000)
    assert e.value.code == "context_length_exceeded"
    assert e.value.body["n_ctx"] == 8192 and e.value.body["n_max_tokens"] == 100000
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "wizard", "content": "x"}])
    assert e.value.param == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, n=2)
    assert e.value.param == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    bad = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.APIStatusError) as e:
        chat(client, content="x" * (2 << 20))
    assert e.value.status_code == 413


def test_unknown_fields_are_ignored(client, server):
    r = chat(client, max_tokens=2, extra_body={**NO_THINK, "some_future_field": {"a": 1}, "another": 3})
    assert r.usage.completion_tokens == 2
    assert "ignoring unknown request field 'some_future_field'" in server.log_text()
