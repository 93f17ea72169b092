"""The coding-agent APIs (Anthropic Messages, OpenAI Responses) against the official `anthropic` and
`openai` SDKs on the demo model (random weights: texts are gibberish, tool calls are forced).

One server (with an API key) serves the module. Checked: multi-turn tool-use conversations through
both SDKs, streaming and not, with every stream's events validated against the API's documented
order (agent_event_grammar.py) and the SDKs' own stream accumulators; thinking / reasoning blocks
and their replay; count_tokens; Anthropic's error shape and the SDKs' exception classes; the
stateless Responses refusals; exact replay (a resent conversation tokenizes to the prompt and
sampled ids of the turn before); and a 10-turn agent conversation in which, from turn 2 on, at
least 90% of the prompt tokens are prefix-cache hits, read from usage and from /metrics.
"""
import json

import anthropic
import openai
import pytest

from agent_event_grammar import check_anthropic, check_responses
from ds4serve_harness import MODEL_NAME, Ds4Server, parse_metrics

API_KEY = "agent-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TIME_TOOL = {"name": "get_time", "description": "Current UTC time", "input_schema": {"type": "object", "properties": {}}}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
RESP_TOOLS = [{"type": "function", "name": t["name"], "description": t["description"], "parameters": t["input_schema"]}
              for t in (TIME_TOOL, WEATHER_TOOL)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Ds4Server("--api-key", API_KEY, log_dir=tmp_path_factory.mktemp("agent"))
    with s:
        yield s


@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


def anthropic_stream(claude, **kw):
    """Raw events (validated) and the SDK's accumulated message for the same request."""
    events = [e.model_dump() for e in claude.messages.create(stream=True, **kw)]
    blocks = check_anthropic(events)
    with claude.messages.stream(**kw) as s:
        final = s.get_final_message()
    assert len(final.content) <= blocks
    return events, final


def responses_stream(oai, **kw):
    events = [e.model_dump() for e in oai.responses.create(stream=True, **kw)]
    items = check_responses(events)
    with oai.responses.stream(**kw) as s:  # the SDK's accumulator checks item identities and order
        last = list(s)[-1]
        # get_final_response() exists for response.completed only; incomplete carries the response too.
        final = s.get_final_response() if last.type == "response.completed" else last.response
    assert last.type == events[-1]["type"] and len(final.output) == items
    return events, final


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use_conversation(claude, server, stream):
    common = dict(model=MODEL_NAME, tools=[TIME_TOOL, WEATHER_TOOL])
    messages = [{"role": "user", "content": "What time is it?"}]
    forced = {"type": "tool", "name": "get_time"}
    if stream:
        events, r = anthropic_stream(claude, messages=messages, max_tokens=16, tool_choice=forced, **common)
        assert [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"] == ["tool_use"]
    else:
        r = claude.messages.create(messages=messages, max_tokens=16, tool_choice=forced, **common)
    assert r.type == "message" and r.role == "assistant" and r.model == MODEL_NAME and r.id.startswith("msg_")
    assert r.stop_reason == "tool_use"
    call = r.content[-1]
    assert call.type == "tool_use" and call.name == "get_time" and call.input == {}

    # Turn 2: the call and its result go back; the model answers (any text, thinking on).
    history = messages + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                        "content": "12:34 UTC"}]}]
    kw = dict(messages=history, max_tokens=6, thinking={"type": "enabled", "budget_tokens": 1024}, **common)
    if stream:
        events, r2 = anthropic_stream(claude, **kw)
    else:
        r2 = claude.messages.create(**kw)
    assert r2.stop_reason in ("max_tokens", "end_turn", "tool_use")
    assert r2.content and r2.content[0].type == "thinking" and r2.content[0].signature
    assert 1 <= r2.usage.output_tokens <= 6
    count = claude.messages.count_tokens(model=MODEL_NAME, messages=history, tools=[TIME_TOOL, WEATHER_TOOL],
                                         thinking={"type": "enabled", "budget_tokens": 1024})
    assert count.input_tokens == r2.usage.input_tokens + r2.usage.cache_read_input_tokens

    # Turn 3 resends the thinking block (signature included) and goes on without thinking.
    history += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r2.content]},
                {"role": "user", "content": "Thanks."}]
    r3 = claude.messages.create(messages=history, max_tokens=4, **common)
    assert r3.content and all(b.type in ("text", "tool_use") for b in r3.content)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_thinking_budget_closes_the_reasoning(claude, stream):
    """budget_tokens bounds the reasoning: at the budget the server writes </think> and the rest of
    max_tokens goes to the answer (the demo model never closes its reasoning by itself)."""
    kw = dict(model=MODEL_NAME, max_tokens=9, messages=[{"role": "user", "content": "Think briefly."}],
              thinking={"type": "enabled", "budget_tokens": 3})
    r = anthropic_stream(claude, **kw)[1] if stream else claude.messages.create(**kw)
    assert [b.type for b in r.content][:2] == ["thinking", "text"], r.content
    assert r.usage.output_tokens <= 9 and r.stop_reason in ("max_tokens", "end_turn")
    if r.stop_reason == "max_tokens":
        assert r.usage.output_tokens == 9  # 3 reasoning + </think> + 5 answer tokens
    # Without a budget below max_tokens the same request stays in its reasoning.
    kw["thinking"]["budget_tokens"] = 9
    assert [b.type for b in claude.messages.create(**kw).content] == ["thinking"]


def test_anthropic_errors(claude, server):
    status, body = server.post_json("/v1/messages", {"messages": [{"role": "user", "content": "x"}]}, headers=AUTH)
    assert status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and "max_tokens" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=MODEL_NAME, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="claude-no-such-model", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=server.base, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL_NAME, max_tokens=4, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_use_conversation(oai, stream):
    user = [{"role": "user", "content": "What time is it?"}]
    kw = dict(model=MODEL_NAME, input=user, tools=RESP_TOOLS, tool_choice={"type": "function", "name": "get_time"},
              max_output_tokens=16, reasoning={"effort": "none"})
    r = responses_stream(oai, **kw)[1] if stream else oai.responses.create(**kw)
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    call = r.output[-1]
    assert call.type == "function_call" and call.name == "get_time" and json.loads(call.arguments) == {}

    # Turn 2: the output items and the call's output go back (stateless); reasoning on.
    history = user + [item.model_dump(exclude_none=True) for item in r.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "12:34 UTC"}]
    kw2 = dict(model=MODEL_NAME, input=history, tools=RESP_TOOLS, max_output_tokens=6,
               include=["reasoning.encrypted_content"], reasoning={"effort": "high"})
    r2 = responses_stream(oai, **kw2)[1] if stream else oai.responses.create(**kw2)
    assert r2.status in ("completed", "incomplete")
    assert r2.output[0].type == "reasoning" and r2.output[0].encrypted_content
    assert r2.usage.output_tokens <= 6 and r2.usage.output_tokens_details.reasoning_tokens >= 1

    # Turn 3 sends the reasoning item back as a stateless client does: encrypted_content only.
    reasoning = r2.output[0].model_dump(exclude_none=True)
    reasoning.pop("content", None)
    history += [reasoning] + [i.model_dump(exclude_none=True) for i in r2.output[1:]] + [
        {"role": "user", "content": "Thanks."}]
    r3 = oai.responses.create(model=MODEL_NAME, input=history, tools=RESP_TOOLS, max_output_tokens=4,
                              reasoning={"effort": "none"}, instructions="Be brief.")
    assert r3.status in ("completed", "incomplete") and r3.instructions == "Be brief."


def test_responses_refusals(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL_NAME, input="x", previous_response_id="resp_123")
    assert "stateless" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=MODEL_NAME, input="x", tools=[{"type": "web_search"}])
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="gpt-no-such-model", input="x")


def test_resent_turn_tokenizes_to_the_computed_ids(server):
    """Exact replay: the next turn's prompt starts with the last prompt and the ids the model sampled."""
    messages = [{"role": "user", "content": "Write something."}]
    tools = [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
             for t in (TIME_TOOL, WEATHER_TOOL)]
    for seed in range(1, 6):
        status, r = server.post_json("/v1/chat/completions", {
            "messages": messages, "tools": tools, "max_tokens": 10, "seed": seed, "return_token_ids": True,
            "reasoning_effort": "high"}, headers=AUTH)
        assert status == 200
        msg = r["choices"][0]["message"]
        if "\ufffd" in (msg.get("content") or "") + (msg.get("reasoning_content") or ""):
            continue  # the sampled bytes were not valid UTF-8: the client cannot send them back
        history = messages + [{"role": "assistant", "content": msg.get("content") or "",
                               "reasoning_content": msg.get("reasoning_content") or ""},
                              {"role": "user", "content": "Go on."}]
        status, tok = server.post_json("/tokenize", {"messages": history, "tools": tools,
                                                     "reasoning_effort": "high"}, headers=AUTH)
        assert status == 200
        computed = r["prompt_token_ids"] + r["choices"][0]["token_ids"]
        assert tok["tokens"][:len(computed)] == computed
        return
    pytest.fail("no seed gave a valid UTF-8 turn")


SYSTEM = " ".join(f"Rule {i}: keep the function handler_{i} short, tested and documented." for i in range(190))


def prefix_counters(server):
    m = parse_metrics(server.metrics())
    q = sum(v for k, v in m.items() if k.startswith("ds4serve_prefix_cache_queries_total"))
    h = sum(v for k, v in m.items() if k.startswith("ds4serve_prefix_cache_hits_total"))
    return q, h


def test_agent_loop_hits_the_prefix_cache(claude, server):
    """10 turns of a growing agent conversation (long system prompt, tools, thinking): from turn 2 on
    >= 90% of each prompt is read from the prefix cache, per usage and per the /metrics counters."""
    messages = [{"role": "user", "content": "Refactor the handlers."}]
    ratios = []  # (cached share from usage, from /metrics, prompt tokens) per turn
    for turn in range(10):
        q0, h0 = prefix_counters(server)
        r = claude.messages.create(model=MODEL_NAME, system=SYSTEM, tools=[TIME_TOOL, WEATHER_TOOL], messages=messages,
                                   max_tokens=6, thinking={"type": "enabled", "budget_tokens": 1024})
        q1, h1 = prefix_counters(server)
        u = r.usage
        prompt = u.input_tokens + u.cache_read_input_tokens
        assert q1 - q0 == prompt  # one admission, the whole prompt queried
        ratios.append((u.cache_read_input_tokens / prompt, (h1 - h0) / (q1 - q0), prompt))
        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
                     {"role": "user", "content": f"Step {turn + 2}: continue."}]
    print("agent loop (cached share by usage, by metrics, prompt tokens):", ratios)
    assert ratios[0][2] > 2800, ratios[0]  # long enough that block granularity (256) allows 90%
    for turn, (from_usage, from_metrics, prompt) in enumerate(ratios[1:], start=2):
        assert from_usage >= 0.9, (turn, ratios)
        assert from_metrics == pytest.approx(from_usage), (turn, ratios)
