#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (deterministic; re-run
after changing it and commit the result). GGUF seeds are written with the `gguf` package (the
project venv has it); their model-config keys are copied from a synthetic model file given with
--model (e.g. build/models/tiny-q2-mtp.gguf) so that config_from_gguf gets past the header.
Usage: .venv/bin/python fuzz/make_corpus.py --model build/models/tiny-q2-mtp.gguf
"""
import argparse
import json
import os
import struct

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
CHAT_TOKENS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
               "<think>", "</think>", "｜DSML｜"]
OFFICIAL_CALL = ("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                 "<｜DSML｜parameter name=\"location\" string=\"true\">Beijing</｜DSML｜parameter>\n"
                 "<｜DSML｜parameter name=\"unit\" string=\"true\">celsius</｜DSML｜parameter>\n"
                 "</｜DSML｜invoke>\n</｜DSML｜tool_calls>")


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def byte_level_alphabet():
    """GPT-2's byte -> printable character map (the byte-level BPE alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def copy_config(writer, model_path, overrides=None):
    overrides = overrides or {}
    reader = gguf.GGUFReader(model_path)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key.startswith("tokenizer.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        if key in overrides:
            writer.add_key_value(key, overrides[key], vtype)
        elif vtype == gguf.GGUFValueType.ARRAY:
            values = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(key, values)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(key, bytes(field.parts[field.data[0]]).decode())
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)


SMALL_MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w"]
SMALL_TOKENS = byte_level_alphabet() + ["he", "ll", "hell", "hello", "Ġw"] + CHAT_TOKENS


def small_tokenizer(writer):
    merges, tokens = SMALL_MERGES, SMALL_TOKENS
    types = [1] * (len(tokens) - len(CHAT_TOKENS)) + [3, 3, 4, 4, 4, 4, 4]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(CHAT_TOKENS[0]))
    writer.add_eos_token_id(tokens.index(CHAT_TOKENS[1]))


def gguf_bytes(build):
    os.makedirs(os.path.join(HERE, "corpus"), exist_ok=True)
    path = os.path.join(HERE, "corpus", ".tmp.gguf")
    writer = gguf.GGUFWriter(path, "deepseek4")
    build(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


def small_tensors(writer):
    writer.add_tensor("a.weight", np.arange(4, dtype=np.float32))
    writer.add_tensor("b.weight", np.ones((2, 32), dtype=np.float16))
    q8 = np.zeros((1, 34), dtype=np.uint8)  # one Q8_0 block: f16 scale + 32 int8
    writer.add_tensor("c.weight", q8, raw_shape=(1, 34), raw_dtype=gguf.GGMLQuantizationType.Q8_0)


def gguf_seeds(model_path):
    write("gguf", "empty.gguf", gguf_bytes(lambda w: None))
    write("gguf", "config.gguf", gguf_bytes(lambda w: copy_config(w, model_path)))
    # Regression: a hostile hyper_connection.count overflowed int in validation (found by gguf_fuzz).
    write("gguf", "hc_count_overflow.gguf",
          gguf_bytes(lambda w: copy_config(w, model_path, {"deepseek4.hyper_connection.count": 16318211})))
    write("gguf", "config_tokenizer_tensors.gguf",
          gguf_bytes(lambda w: (copy_config(w, model_path, {"deepseek4.vocab_size": len(SMALL_TOKENS)}),
                               small_tokenizer(w), small_tensors(w))))

    def every_type(w):
        w.add_uint8("t.u8", 7); w.add_int8("t.i8", -7); w.add_uint16("t.u16", 700); w.add_int16("t.i16", -700)
        w.add_custom_alignment(64); w.add_int32("t.i32", -70000); w.add_float32("t.f32", 1.5)
        w.add_bool("t.bool", True); w.add_string("t.str", "héllo"); w.add_uint64("t.u64", 1 << 40)
        w.add_int64("t.i64", -(1 << 40)); w.add_float64("t.f64", 2.25)
        w.add_array("t.arr", [1, 2, 3]); w.add_array("t.strs", ["a", "bc", ""])
        w.add_array("t.nested", [[1, 2], [3]])
        small_tensors(w)
    data = gguf_bytes(every_type)
    write("gguf", "every_type_aligned64.gguf", data)
    write("gguf", "every_type_v2.gguf", data[:4] + struct.pack("<I", 2) + data[8:])
    write("gguf", "truncated.gguf", data[: len(data) // 2])


def openai_seeds():
    chat = [
        {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32},
        {"model": "ds4", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
         "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 12, "stop": ["\n\n", "END"],
         "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
         "logprobs": True, "top_logprobs": 3, "reasoning_effort": "none", "n": 1, "user": "u"},
        {"messages": [{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": "", "reasoning_content": "need a tool",
                       "tool_calls": [{"id": "call_1", "type": "function",
                                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}],
         "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}}}],
         "tool_choice": "auto", "parallel_tool_calls": True, "max_completion_tokens": 64},
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "now"}}],
         "tool_choice": {"type": "function", "function": {"name": "now"}}, "reasoning_effort": "max"},
        {"messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u"}],
         "tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
         "chat_template_kwargs": {"thinking": False}, "include_reasoning": False, "stop_token_ids": [1, 2],
         "ignore_eos": True, "priority": -3, "return_token_ids": True},
    ]
    completions = [
        {"prompt": "Once upon a time", "max_tokens": 16, "echo": True},
        {"prompt": [0, 100, 200, 300], "max_tokens": 4, "temperature": 0, "logprobs": 2},
        {"prompt": "<｜User｜>hi<｜Assistant｜>", "add_special_tokens": False, "stop": "\n", "stream": True},
    ]
    tokenize = [
        {"prompt": "hello world", "add_special_tokens": True, "return_token_strs": True},
        {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False, "tools": []},
    ]
    detokenize = [{"tokens": [0, 1, 2, 3, 128000]}, {"model": "ds4", "tokens": []}]
    bad = ['{"messages": [', '{"messages": "x"}', '[]', '{"max_tokens": -1, "messages": []}',
           '{"messages":[{"role":"user","content":"\\ud800"}],"max_tokens":9223372036854775807}',
           '{"messages":[{"role":"wizard","content":1}],"temperature":1e400}']
    for i, body in enumerate(chat):
        write("openai_request", f"chat_{i}", b"\x00" + json.dumps(body, ensure_ascii=False).encode())
    for i, body in enumerate(completions):
        write("openai_request", f"completions_{i}", b"\x01" + json.dumps(body, ensure_ascii=False).encode())
    for i, body in enumerate(tokenize):
        write("openai_request", f"tokenize_{i}", b"\x02" + json.dumps(body).encode())
    for i, body in enumerate(detokenize):
        write("openai_request", f"detokenize_{i}", b"\x03" + json.dumps(body).encode())
    for i, body in enumerate(bad):
        write("openai_request", f"bad_{i}", bytes([i % 2]) + body.encode())
    return chat, completions


def http_seeds(chat, completions):
    def post(path, body, extra=""):
        raw = json.dumps(body, ensure_ascii=False).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(raw)}\r\n\r\n").encode()
        return head + raw
    write("http_request", "get_health", b"\x00GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    write("http_request", "chat", b"\x00" + post("/v1/chat/completions", chat[0], "Authorization: Bearer sk-fuzz-key\r\n"))
    write("http_request", "chat_split_reads", b"\x07" + post("/v1/chat/completions", chat[2], "x-api-key: k\r\n"))
    write("http_request", "completions_origin",
          b"\x00" + post("/v1/completions?x=1", completions[0], "Origin: https://app.example\r\nExpect: 100-continue\r\n"))
    body = json.dumps({"prompt": "hi"}).encode()
    chunked = (b"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
               f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    write("http_request", "tokenize_chunked", b"\x05" + chunked)
    pipelined = (post("/detokenize", {"tokens": [1, 2, 3]}) + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n" +
                 post("/v1/chat/completions", chat[1]))
    write("http_request", "pipelined", b"\x00" + pipelined)
    write("http_request", "http10_options", b"\x00OPTIONS /v1/chat/completions HTTP/1.0\r\nOrigin: https://evil\r\n\r\n")
    write("http_request", "bad_length", b"\x00POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{}")


def dsml_seeds():
    texts = [
        "Let me check." + OFFICIAL_CALL,
        "A\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"w\">\n<｜DSML｜parameter name=\"s\" string=\"true\">x "
        "&lt;/｜DSML｜parameter> </parameter> &lt; y</｜DSML｜parameter>\n<｜DSML｜parameter name=\"j\" "
        "string=\"false\">{\"a\": [1, 2.5e3, null, true]}</｜DSML｜parameter>\n<｜DSML｜parameter name=\"o\">\n"
        "<｜DSML｜parameter name=\"k\" string=\"true\">v</｜DSML｜parameter>\n</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
        "</｜DSML｜tool_calls>",
        "no tools here, just < and <tool and <｜DSML｜ text\n\n",
        "broken <｜DSML｜tool_calls>\n<｜DSML｜invoke>\n</｜DSML｜invoke></｜DSML｜tool_calls> tail",
        OFFICIAL_CALL + "\n  \n" + OFFICIAL_CALL.replace("get_weather", "name &quot;q&quot; &amp;"),
        "x<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">v",
    ]
    for i, text in enumerate(texts):
        write("dsml", f"text_{i}", bytes([i * 37 % 256]) + text.encode())


def tokenizer_seeds():
    texts = [
        "Hello, world! The quick brown fox jumps over 1234567 lazy dogs.",
        "你好，世界。DeepSeek 模型的分词器测试。",
        "emoji 👩‍💻🚀 and accents: café naïve Ångström",
        "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>plan</think>answer<｜end▁of▁sentence｜>",
        "  leading   spaces\t\ttabs\r\n\r\nnewlines   \n",
        "｜DSML｜tool_calls <｜DSML｜invoke name=\"x\"> 3.14159 1e10 'quotes' \"double\"",
    ]
    for i, text in enumerate(texts):
        write("tokenizer", f"text_{i}", bytes([i % 16]) + text.encode())
    write("tokenizer", "invalid_utf8", b"\x01" + b"ok \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 end")
    write("tokenizer", "stop_string", b"\x0c\x03END" + "text with END inside <think>x</think>".encode())


def sse_seeds():
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "ds4",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]}
    last = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    stream = "".join(f"data: {json.dumps(c)}\n\n" for c in (chunk, last, usage)) + "data: [DONE]\n\n"
    write("sse", "chat_stream", b"\x00" + stream.encode())
    write("sse", "crlf_comments", b"\x03" + (": ping\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 7\ndata: line1\n"
                                              "data: line2\n\n:keep-alive\n\ndata:{\"b\":2}\r\rdata: [DONE]\n\n").encode())
    write("sse", "error_event", b"\x02data: {\"error\": {\"message\": \"overloaded\", \"code\": 503}}\n\n")
    write("sse", "completions_tail", b"\x05data: {\"choices\":[{\"text\":\"x\",\"finish_reason\":\"length\"}]}\n\ndata: tail")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a synthetic GGUF whose config keys the GGUF seeds copy")
    args = parser.parse_args()
    gguf_seeds(args.model)
    chat, completions = openai_seeds()
    http_seeds(chat, completions)
    dsml_seeds()
    tokenizer_seeds()
    sse_seeds()


if __name__ == "__main__":
    main()
