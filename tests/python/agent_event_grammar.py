"""Checks that a streamed response follows its API's documented event order.

Anthropic Messages: message_start, then per content block content_block_start, its deltas
(text_delta / thinking_delta / signature_delta / input_json_delta, matching the block's type) and
content_block_stop, blocks indexed 0, 1, 2, ...; then message_delta (stop_reason) and message_stop;
ping events may appear anywhere after message_start.

OpenAI Responses: response.created, response.in_progress; per output item
response.output_item.added, then (reasoning) content_part.added, reasoning_text.delta*,
reasoning_text.done, content_part.done, or (message) content_part.added, output_text.delta*,
output_text.done, content_part.done, or (function_call) function_call_arguments.delta*,
function_call_arguments.done; then response.output_item.done; last response.completed,
response.incomplete or response.failed; sequence_number counts 0, 1, 2, ...

Each takes the events as dicts (SDK event objects through .model_dump() or raw JSON) and raises
AssertionError naming the first event out of place. Used by tests/python/test_http_agent_apis.py.
"""

ANTHROPIC_DELTA_FOR = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"},
                       "tool_use": {"input_json_delta"}}


def check_anthropic(events):
    types = [e["type"] for e in events if e["type"] != "ping"]
    assert types and types[0] == "message_start", types[:3]
    assert types[-2:] == ["message_delta", "message_stop"], types[-3:]
    open_block, next_index = None, 0
    for e in events[1:-2]:
        t = e["type"]
        if t == "ping":
            continue
        if t == "content_block_start":
            assert open_block is None, f"block {e['index']} starts inside block {open_block}"
            assert e["index"] == next_index, (e["index"], next_index)
            open_block = (e["index"], e["content_block"]["type"])
            next_index += 1
        elif t == "content_block_delta":
            assert open_block and e["index"] == open_block[0], f"delta outside its block: {e}"
            assert e["delta"]["type"] in ANTHROPIC_DELTA_FOR[open_block[1]], (open_block, e["delta"]["type"])
        elif t == "content_block_stop":
            assert open_block and e["index"] == open_block[0], f"stop of a block not open: {e}"
            open_block = None
        else:
            raise AssertionError(f"unexpected event {t} between message_start and message_delta")
    assert open_block is None, f"block {open_block} never stopped"
    assert events[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence", "tool_use")
    return next_index


RESPONSES_ITEM_EVENTS = {
    "reasoning": ["response.content_part.added", "response.reasoning_text.delta*", "response.reasoning_text.done",
                  "response.content_part.done"],
    "message": ["response.content_part.added", "response.output_text.delta*", "response.output_text.done",
                "response.content_part.done"],
    "function_call": ["response.function_call_arguments.delta*", "response.function_call_arguments.done"],
}


def check_responses(events):
    types = [e["type"] for e in events]
    for i, e in enumerate(events):
        assert e["sequence_number"] == i, (i, e["sequence_number"], e["type"])
    assert types[:2] == ["response.created", "response.in_progress"], types[:3]
    assert types[-1] in ("response.completed", "response.incomplete", "response.failed"), types[-1]
    pos, index = 2, 0
    while pos < len(types) - 1:
        added = events[pos]
        assert added["type"] == "response.output_item.added", f"expected an item at {pos}: {types[pos]}"
        assert added["output_index"] == index
        pos += 1
        for step in RESPONSES_ITEM_EVENTS[added["item"]["type"]]:
            if step.endswith("*"):
                while types[pos] == step[:-1]:
                    assert events[pos]["output_index"] == index
                    pos += 1
            else:
                assert types[pos] == step, f"expected {step} at {pos}, got {types[pos]}"
                assert events[pos]["output_index"] == index
                pos += 1
        assert types[pos] == "response.output_item.done", f"expected output_item.done at {pos}, got {types[pos]}"
        assert events[pos]["item"]["id"] == added["item"]["id"]
        pos += 1
        index += 1
    return index
