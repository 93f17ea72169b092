"""Hostile request bodies over real HTTP (issue #12): malformed and truncated JSON, invalid UTF-8,
deep nesting, wrong types, huge numbers, absurd sampling values, empty / unknown-role messages,
thousands of tools and stop strings, and the per-request limits (--max-tokens, --max-stop,
--max-stop-bytes, --max-tools, --max-messages). Every case gets the expected status and an OpenAI
error body naming the parameter (or a 200 where the input is odd but valid); after every group a
normal request succeeds and the KV pool is back to zero.
"""
import json

import pytest

from ds4serve_harness import Ds4Server
from hardening_util import CHAT, COMPLETIONS, assert_healthy, chat_body, check_error

MAX_TOOLS, MAX_STOP, MAX_STOP_BYTES, MAX_MESSAGES, MAX_TOKENS = 64, 16, 256, 100, 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Ds4Server("--max-tools", MAX_TOOLS, "--max-stop", MAX_STOP, "--max-stop-bytes", MAX_STOP_BYTES,
                  "--max-messages", MAX_MESSAGES, "--max-tokens", MAX_TOKENS,
                  log_dir=tmp_path_factory.mktemp("bad_input"))
    with s:
        yield s


M = '"messages":[{"role":"user","content":"hi"}],"max_tokens":1,"reasoning_effort":"none"'


def post(server, path, body):
    raw = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    status, _, data = server.request("POST", path, raw)
    return status, data


def run_case(server, path, body, status, param, code):
    got, data = post(server, path, body)
    if status == 200:
        assert got == 200, data[:300]
        assert json.loads(data)["usage"]["completion_tokens"] >= 1
    else:
        check_error(got, data, status, param, code)


def tool(i, name=None):
    return {"type": "function", "function": {"name": name or f"f{i}", "parameters": {"type": "object"}}}


# --- malformed, truncated and non-object JSON ------------------------------------------------------
MALFORMED = [
    ("not_json", b"{not json"),
    ("empty_body", b""),
    ("truncated_array", b'{"messages": ['),
    ("truncated_object", b'{"messages":[{"role":"user","content":"hi"}]'),
    ("truncated_string", b'{"messages":[{"role":"user","content":"hi'),
    ("top_level_array", b"[1, 2, 3]"),
    ("top_level_string", b'"hello"'),
    ("top_level_null", b"null"),
    ("trailing_garbage", ("{%s} trailing" % M).encode()),
    ("trailing_comma", ("{%s,}" % M).encode()),
    ("single_quotes", b"{'messages': []}"),
    ("nan_literal", ("{%s,\"temperature\":NaN}" % M).encode()),
    ("comment", ("{%s} // comment" % M).encode()),
    ("utf8_bom", ("\ufeff{%s}" % M).encode()),
    ("only_whitespace", b"   \n\t  "),
]


@pytest.mark.parametrize("name,body", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_json_is_invalid_json(server, name, body):
    err = check_error(*post(server, CHAT, body), 400, code="invalid_json")
    assert err["param"] is None and err["type"] == "invalid_request_error"


def test_malformed_group_leaves_server_healthy(server):
    assert_healthy(server)


# --- invalid UTF-8, escapes, nesting and huge numbers ----------------------------------------------
def content_bytes(raw):
    return b'{"messages":[{"role":"user","content":"' + raw + b'"}],"max_tokens":1,"reasoning_effort":"none"}'


ENCODING = [
    ("invalid_byte_ff", content_bytes(b"\xff\xfe"), 400, None, "invalid_json"),
    ("overlong_slash", content_bytes(b"\xc0\xaf"), 400, None, "invalid_json"),
    ("truncated_multibyte", content_bytes(b"\xe2\x82"), 400, None, "invalid_json"),
    ("utf16_surrogate_bytes", content_bytes(b"\xed\xa0\x80"), 400, None, "invalid_json"),
    ("lone_surrogate_escape", content_bytes(b"\\ud800"), 400, None, "invalid_json"),
    ("bad_escape", content_bytes(b"\\q"), 400, None, "invalid_json"),
    ("raw_control_char", content_bytes(b"a\x01b"), 400, None, "invalid_json"),
    ("nul_escape_is_text", content_bytes(b"a\\u0000b"), 200, None, None),
    ("emoji_is_text", content_bytes("\U0001F600 ok".encode()), 200, None, None),
    ("depth_100000", ("{%s,\"x\":%s}" % (M, "[" * 100000 + "]" * 100000)).encode(), 400, None, "invalid_json"),
    ("depth_2000_objects", ("{%s,\"x\":%s}" % (M, '{"a":' * 2000 + "1" + "}" * 2000)).encode(), 400, None,
     "invalid_json"),
    ("depth_500_ignored_field", ("{%s,\"x\":%s}" % (M, "[" * 500 + "]" * 500)).encode(), 200, None, None),
    ("int_overflow", ("{%s,\"seed\":99999999999999999999999}" % M).encode(), 400, None, "invalid_json"),
    ("float_infinite", ("{%s,\"temperature\":1e309}" % M).encode(), 400, None, "invalid_json"),
    ("huge_max_tokens_float", ("{%s,\"max_tokens\":1e300}" % M.replace(',"max_tokens":1', '')).encode(), 400,
     "max_tokens", None),
    ("ten_thousand_digits", ("{%s,\"temperature\":0.%s}" % (M, "1" * 10000)).encode(), 200, None, None),
]


@pytest.mark.parametrize("name,body,status,param,code", ENCODING, ids=[c[0] for c in ENCODING])
def test_encoding_nesting_and_numbers(server, name, body, status, param, code):
    run_case(server, CHAT, body, status, param, code)


def test_encoding_group_leaves_server_healthy(server):
    assert_healthy(server)


# --- wrong types and out-of-range values ------------------------------------------------------------
def chat(**extra):
    return chat_body(**{"max_tokens": 1, **extra})


FIELDS = [
    ("max_tokens_string", chat(max_tokens="ten"), 400, "max_tokens", None),
    ("max_tokens_zero", chat(max_tokens=0), 400, "max_tokens", None),
    ("max_tokens_negative", chat(max_tokens=-1), 400, "max_tokens", None),
    ("max_tokens_fraction", chat(max_tokens=2.5), 400, "max_tokens", None),
    ("max_tokens_bool", chat(max_tokens=True), 400, "max_tokens", None),
    ("max_tokens_over_limit", chat(max_tokens=MAX_TOKENS + 1), 400, "max_tokens", "limit_exceeded"),
    ("max_tokens_absurd", chat(max_tokens=10 ** 15), 400, "max_tokens", "limit_exceeded"),
    ("max_completion_tokens_negative", chat(max_completion_tokens=-7), 400, "max_completion_tokens", None),
    ("temperature_string", chat(temperature="hot"), 400, "temperature", None),
    ("temperature_negative", chat(temperature=-1), 400, "temperature", None),
    ("temperature_too_high", chat(temperature=3), 400, "temperature", None),
    ("top_p_zero", chat(top_p=0), 400, "top_p", None),
    ("top_p_list", chat(top_p=[]), 400, "top_p", None),
    ("top_k_negative", chat(top_k=-5), 400, "top_k", None),
    ("top_k_huge", chat(top_k=2 ** 40), 400, "top_k", None),
    ("top_k_minus_one_means_off", chat(top_k=-1), 200, None, None),
    ("min_p_two", chat(min_p=2), 400, "min_p", None),
    ("n_zero", chat(n=0), 400, "n", None),
    ("n_two", chat(n=2), 400, "n", "unsupported_value"),
    ("n_absurd", chat(n=10 ** 6), 400, "n", None),
    ("seed_fraction", chat(seed=1.5), 400, "seed", None),
    ("seed_2_pow_64", chat(seed=2 ** 64), 400, None, "invalid_json"),
    ("stream_string", chat(stream="yes"), 400, "stream", None),
    ("stream_options_not_object", chat(stream=True, stream_options="all"), 400, "stream_options", None),
    ("logprobs_string", chat(logprobs="true"), 400, "logprobs", None),
    ("top_logprobs_21", chat(logprobs=True, top_logprobs=21), 400, "top_logprobs", None),
    ("priority_absurd", chat(priority=10 ** 9), 400, "priority", None),
    ("frequency_penalty_nonzero", chat(frequency_penalty=1), 400, "frequency_penalty", "unsupported_value"),
    ("logit_bias_given", chat(logit_bias={"1": 5}), 400, "logit_bias", "unsupported_value"),
    ("stop_token_ids_negative", chat(stop_token_ids=[-1]), 400, "stop_token_ids[0]", None),
    ("stop_token_ids_out_of_vocab", chat(stop_token_ids=[10 ** 9]), 400, "stop_token_ids", None),
    ("model_unknown", chat(model="gpt-9"), 404, "model", "model_not_found"),
    ("model_number", chat(model=5), 400, "model", None),
    ("unknown_field_is_ignored", chat(frobnicate={"a": [1, 2]}), 200, None, None),
]


@pytest.mark.parametrize("name,body,status,param,code", FIELDS, ids=[c[0] for c in FIELDS])
def test_field_types_and_ranges(server, name, body, status, param, code):
    run_case(server, CHAT, body, status, param, code)


def test_fields_group_leaves_server_healthy(server):
    assert_healthy(server)


# --- messages, roles, tools, stop lists, completions prompts --------------------------------------
def msgs(*messages, **extra):
    return {"messages": list(messages), "max_tokens": 1, "reasoning_effort": "none", **extra}


MESSAGES = [
    ("messages_missing", CHAT, {"max_tokens": 1}, 400, "messages", None),
    ("messages_empty", CHAT, msgs(), 400, "messages", None),
    ("messages_object", CHAT, {"messages": {"role": "user"}}, 400, "messages", None),
    ("messages_string", CHAT, {"messages": "hello"}, 400, "messages", None),
    ("message_not_object", CHAT, msgs("hello"), 400, "messages[0]", None),
    ("message_empty_object", CHAT, msgs({}), 400, "messages[0].role", None),
    ("role_unknown", CHAT, msgs({"role": "wizard", "content": "x"}), 400, "messages[0].role", None),
    ("role_empty", CHAT, msgs({"role": "", "content": "x"}), 400, "messages[0].role", None),
    ("role_number", CHAT, msgs({"role": 1, "content": "x"}), 400, "messages[0].role", None),
    ("content_missing", CHAT, msgs({"role": "user"}), 400, "messages[0].content", None),
    ("content_number", CHAT, msgs({"role": "user", "content": 5}), 400, "messages[0].content", None),
    ("content_part_bad_type", CHAT, msgs({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}), 400,
     None, None),
    ("content_empty_string_ok", CHAT, msgs({"role": "user", "content": ""}), 200, None, None),
    ("messages_over_limit", CHAT, msgs(*[{"role": "user", "content": "a"}] * (MAX_MESSAGES + 1)), 400, "messages",
     "limit_exceeded"),
    ("messages_at_limit_ok", CHAT, msgs(*[{"role": "user", "content": "a"}] * MAX_MESSAGES), 200, None, None),
    ("tool_call_without_function", CHAT,
     msgs({"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c1"}]}), 400,
     "messages[1].tool_calls[0].function", None),
    ("tools_over_limit", CHAT, msgs({"role": "user", "content": "x"}, tools=[tool(i) for i in range(MAX_TOOLS + 1)]),
     400, "tools", "limit_exceeded"),
    ("tools_thousands", CHAT, msgs({"role": "user", "content": "x"}, tools=[tool(i) for i in range(5000)]), 400,
     "tools", "limit_exceeded"),
    ("tools_at_limit_ok", CHAT, msgs({"role": "user", "content": "x"}, tools=[tool(i) for i in range(MAX_TOOLS)]),
     200, None, None),
    ("tool_type_unknown", CHAT, msgs({"role": "user", "content": "x"}, tools=[{"type": "retrieval"}]), 400,
     "tools[0].type", None),
    ("tool_without_name", CHAT, msgs({"role": "user", "content": "x"}, tools=[{"type": "function", "function": {}}]),
     400, "tools[0].function.name", None),
    ("tools_object", CHAT, msgs({"role": "user", "content": "x"}, tools={"a": 1}), 400, "tools", None),
    ("tool_choice_unknown_name", CHAT, msgs({"role": "user", "content": "x"}, tools=[tool(0)],
                                            tool_choice={"type": "function", "function": {"name": "nope"}}),
     400, "tool_choice", None),
    ("tool_choice_required_without_tools", CHAT, msgs({"role": "user", "content": "x"}, tool_choice="required"), 400,
     "tool_choice", None),
    ("stop_over_limit", CHAT, chat(stop=[f"s{i}" for i in range(MAX_STOP + 1)]), 400, "stop", "limit_exceeded"),
    ("stop_thousands", CHAT, chat(stop=[f"s{i}" for i in range(10000)]), 400, "stop", "limit_exceeded"),
    ("stop_string_too_long", CHAT, chat(stop=["x" * (MAX_STOP_BYTES + 1)]), 400, "stop", "limit_exceeded"),
    ("stop_at_limits_ok", CHAT, chat(stop=["y" * MAX_STOP_BYTES] * MAX_STOP), 200, None, None),
    ("stop_number", CHAT, chat(stop=5), 400, "stop", None),
    ("stop_list_of_numbers", CHAT, chat(stop=[1]), 400, "stop[0]", None),
    ("completion_prompt_missing", COMPLETIONS, {"max_tokens": 1}, 400, "prompt", None),
    ("completion_prompt_empty_list", COMPLETIONS, {"prompt": [], "max_tokens": 1}, 400, "prompt", None),
    ("completion_prompt_negative_id", COMPLETIONS, {"prompt": [-1], "max_tokens": 1}, 400, "prompt[0]", None),
    ("completion_prompt_id_out_of_vocab", COMPLETIONS, {"prompt": [10 ** 9], "max_tokens": 1}, 400, "prompt", None),
    ("completion_prompt_batch", COMPLETIONS, {"prompt": ["a", "b"], "max_tokens": 1}, 400, "prompt", None),
    ("completion_stop_thousands", COMPLETIONS, {"prompt": "a", "max_tokens": 1, "stop": ["z"] * 3000}, 400, "stop",
     "limit_exceeded"),
    ("completion_max_tokens_over_limit", COMPLETIONS, {"prompt": "a", "max_tokens": MAX_TOKENS + 1}, 400,
     "max_tokens", "limit_exceeded"),
    ("context_exceeded", CHAT, chat(max_tokens=MAX_TOKENS, content="word " * 8000), 400, "messages",
     "context_length_exceeded"),
]


@pytest.mark.parametrize("name,path,body,status,param,code", MESSAGES, ids=[c[0] for c in MESSAGES])
def test_messages_tools_and_stop_lists(server, name, path, body, status, param, code):
    run_case(server, path, body, status, param, code)


def test_messages_group_leaves_server_healthy(server):
    assert_healthy(server)


# --- the same limits on the agent APIs (Anthropic Messages, OpenAI Responses) ------------------------
def anthropic_error(server, body, needle):
    status, data = post(server, "/v1/messages", body)
    err = json.loads(data)
    assert status == 400 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error", data
    assert needle in err["error"]["message"], err


def test_agent_apis_share_the_limits(server):
    user = [{"role": "user", "content": "hi"}]
    tools = [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(MAX_TOOLS + 1)]
    anthropic_error(server, {"max_tokens": 5, "messages": user, "tools": tools}, f"at most {MAX_TOOLS}")
    anthropic_error(server, {"max_tokens": MAX_TOKENS + 1, "messages": user}, f"at most {MAX_TOKENS}")
    anthropic_error(server, {"max_tokens": 5, "messages": user * (MAX_MESSAGES + 1)}, f"at most {MAX_MESSAGES}")
    anthropic_error(server, {"max_tokens": 5, "messages": user, "stop_sequences": ["s"] * (MAX_STOP + 1)},
                    "'stop_sequences' holds")
    status, data = post(server, "/v1/responses", {"input": "hi", "max_output_tokens": MAX_TOKENS + 1})
    check_error(status, data, 400, param="max_output_tokens", code="limit_exceeded")
    status, data = post(server, "/v1/chat/completions",
                        {"messages": user, "max_completion_tokens": MAX_TOKENS + 1})
    check_error(status, data, 400, param="max_completion_tokens", code="limit_exceeded")
    rtools = [{"type": "function", "name": f"f{i}", "parameters": {"type": "object"}} for i in range(MAX_TOOLS + 1)]
    status, data = post(server, "/v1/responses", {"input": "hi", "tools": rtools})
    check_error(status, data, 400, param="tools", code="limit_exceeded")
    assert_healthy(server)
