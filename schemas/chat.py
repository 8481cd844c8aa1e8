"""The Clover chat template: one definition, used by prep-pairs, DPO, generate, export and the judge.

    <s><|system|>{system}<|end|><|user|>{prompt}<|end|><|assistant|>{response}<|end|>

The control tokens are inserted by id, never parsed from text, so a prompt that contains the string
"<|user|>" cannot forge a turn. The system turn is optional. An assistant turn ends with <|end|>,
which is also a stop token for generation.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from schemas.datasets import Column, DatasetSchema

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"

# The same template for Hugging Face tokenizers (tokenizer_config.json's chat_template).
JINJA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'user' %}<|user|>{{ message['content'] }}<|end|>"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<|end|>"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def prompt_ids(encode: Callable[[str], list[int]], ids: dict[str, int], prompt: str, system: str | None = None) -> list[int]:
    """Token ids of everything before the response: <s>, the optional system turn, the user turn, <|assistant|>.

    `ids` maps "bos" and the control-token strings to ids (tokenizer.json's special_ids and control_ids).
    """
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return messages_ids(encode, ids, messages)


def messages_ids(encode: Callable[[str], list[int]], ids: dict[str, int], messages: list[dict]) -> list[int]:
    """A chat (system/user/assistant turns) ready for the next assistant turn: ends with <|assistant|>."""
    markers = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
    out = [ids["bos"]]
    for message in messages:
        if message.get("role") not in markers or not isinstance(message.get("content"), str):
            raise ValueError(f"unsupported chat message {message!r}: roles are system, user, assistant; content a string")
        out += [ids[markers[message["role"]]], *encode(message["content"]), ids[END]]
    return out + [ids[ASSISTANT]]


def response_ids(encode: Callable[[str], list[int]], ids: dict[str, int], response: str) -> list[int]:
    return [*encode(response), ids[END]]


def template_ids(tokenizer_meta: dict) -> dict[str, int]:
    """bos and the control tokens, from a tokenizer.json."""
    return {"bos": tokenizer_meta["special_ids"]["bos"], **tokenizer_meta["control_ids"]}


PAIRS = DatasetSchema(
    "pairs",
    (
        Column("pair_id", pa.string(), nullable=False, doc="unique pair id (given, or derived from file and line)"),
        Column("prompt", pa.string(), nullable=False, doc="normalized prompt"),
        Column("chosen", pa.string(), nullable=False, doc="normalized preferred response"),
        Column("rejected", pa.string(), nullable=False, doc="normalized dispreferred response"),
        Column("source", pa.string(), doc="where the pair came from (input field or file name)"),
        Column("meta", pa.string(), doc="other input fields, as a JSON object"),
        Column("prompt_ids", pa.list_(pa.int32()), nullable=False, doc="chat-template ids up to and including <|assistant|>"),
        Column("chosen_ids", pa.list_(pa.int32()), nullable=False, doc="response ids ending with <|end|>"),
        Column("rejected_ids", pa.list_(pa.int32()), nullable=False, doc="response ids ending with <|end|>"),
        Column("prompt_truncated", pa.bool_(), nullable=False, doc="the prompt lost tokens from its start"),
        Column("responses_truncated", pa.bool_(), nullable=False, doc="a response lost tokens from its end"),
    ),
)

REMOVED_PAIRS = DatasetSchema(
    "removed_pairs",
    (
        Column("pair_id", pa.string(), nullable=False, doc="the removed pair"),
        Column("reason", pa.string(), nullable=False, doc="duplicate_pair, identical_responses or too_long"),
        Column("kept_pair_id", pa.string(), doc="for duplicate_pair: the pair kept in its place"),
    ),
)

# DPO's reference log-probs sidecar (PAIRS/reference_logps.parquet); the file's metadata holds the
# checkpoint_sha256 and tokenizer_sha256 they were computed with.
REFERENCE_SCHEMA = DatasetSchema(
    "reference_logps",
    (
        Column("pair_id", pa.string(), doc="the pair (PAIRS.pair_id)"),
        Column("ref_chosen_logp", pa.float64(), doc="the starting checkpoint's summed log-prob of chosen_ids"),
        Column("ref_rejected_logp", pa.float64(), doc="the starting checkpoint's summed log-prob of rejected_ids"),
    ),
)
