"""Export a run to a Hugging Face LlamaForCausalLM directory, and load runs or exports back for generation.

The model's weights already have Llama's names and RoPE layout, so export renames (`model.` prefix)
and never permutes. config.json is derived from the run's ModelConfig; the tokenizer is the run's
SentencePiece model with its special tokens and the chat template (schemas/chat.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from schemas import storage
from schemas.chat import ASSISTANT, END, JINJA_TEMPLATE, SYSTEM, USER
from training.trainer import checkpoint
from training.trainer.model import ModelConfig, Transformer, model_config

SHARD_BYTES = 5 * 1024**3
CLOVER_CONFIG = "clover_config.json"      # the ModelConfig, for loading an export back without transformers
CLOVER_TOKENIZER = "clover_tokenizer.json"  # tokenizer.json of `clover train-tokenizer` (special and control ids)
CLOVER_EVAL = "clover_eval.json"  # the pretraining run's held-out token data, for perplexity after export


@dataclass
class ExportConfig:
    """`clover export`'s config."""

    dtype: str = field(default="bfloat16", metadata={"help": "weight dtype written: bfloat16, float16 or float32"})


def hf_config(cfg: ModelConfig, special_ids: dict[str, int], end_id: int, dtype: str) -> dict:
    """LlamaConfig fields for a Clover ModelConfig."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": False, "initializer_range": cfg.init_std,
        "bos_token_id": special_ids["bos"], "eos_token_id": [special_ids["eos"], end_id],
        "pad_token_id": special_ids["pad"], "torch_dtype": dtype, "dtype": dtype, "use_cache": True,
    }


def hf_name(name: str) -> str:
    return name if name.startswith("lm_head") else f"model.{name}"


def run_config(run: str) -> dict:
    return json.loads(storage.read_text(storage.join(run, "config.json")))


def held_out_record(run: str) -> dict:
    """The held-out token data of the pretraining behind a run ({run, trained_on, data, held_out_shards}:
    shards of `data` held out, or all of `data` when it is not what the run trained on), followed from a
    DPO run to the run it started from."""
    config = run_config(run)
    while config.get("kind") == "dpo":
        run = config["init_run"]
        config = run_config(run)
    evaluation = config.get("eval") or {"data": config["data"], "held_out_shards": []}
    return {"run": run, "trained_on": config["data"], **evaluation}


def run_tokenizer_dir(run: str) -> str:
    """The tokenizer a run was trained with: from its token manifest, or for DPO from its pairs' report."""
    config = run_config(run)
    if config.get("kind") == "dpo":
        report = json.loads(storage.read_text(storage.join(config["pairs"], "report.json")))
        return report["tokenizer"]["path"]
    data = config["data"].rstrip("/")
    manifest = data if data.endswith(".json") else storage.join(data, "manifest.json")
    return json.loads(storage.read_text(manifest))["tokenizer"]["path"]


def load_run(run: str, step: int | None = None) -> tuple[Transformer, str]:
    """A run's model (newest complete checkpoint, or `step`) on CPU in fp32, and its tokenizer directory."""
    config = run_config(run)
    cfg = model_config(config["model"], **config["engine"]["model_overrides"])
    model = Transformer(cfg)
    model.init_weights(0)
    checkpoint.load_model_only(checkpoint.newest(run, step), model)
    return model.eval(), run_tokenizer_dir(run)


def export(run: str, out: str, dtype: str = "bfloat16", tokenizer_dir: str | None = None) -> Path:
    """Write `out` as a Hugging Face Llama directory (config, safetensors, tokenizer, generation config).

    `run` may be on any filesystem (s3://...); `out` is a local directory, as Hugging Face loaders want.
    """
    from safetensors.torch import save_file

    model, run_tokenizer = load_run(run)
    tokenizer_dir = tokenizer_dir or run_tokenizer
    meta = json.loads(storage.read_text(storage.join(tokenizer_dir, "tokenizer.json")))
    special, control = meta["special_ids"], meta["control_ids"]
    target = Path(out)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype]
    tensors = {hf_name(k): v.to(torch_dtype).contiguous() for k, v in model.state_dict().items()}
    _save_sharded(tensors, staging, save_file)
    (staging / "config.json").write_text(json.dumps(hf_config(model.cfg, special, control[END], dtype), indent=2))
    (staging / CLOVER_CONFIG).write_text(json.dumps(asdict(model.cfg), indent=2))
    (staging / CLOVER_EVAL).write_text(json.dumps(held_out_record(run), indent=2))
    (staging / "generation_config.json").write_text(json.dumps({
        "bos_token_id": special["bos"], "eos_token_id": [special["eos"], control[END]], "pad_token_id": special["pad"],
        "do_sample": True, "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 512}, indent=2))
    fs, path = storage.resolve(storage.join(tokenizer_dir, meta["model"]))
    with fs.open_input_stream(path) as source:
        (staging / "tokenizer.model").write_bytes(source.read())
    (staging / CLOVER_TOKENIZER).write_text(json.dumps(meta, indent=2))
    names = {v: k for k, v in special.items()}
    tokens = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}
    (staging / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "model_max_length": model.cfg.max_seq_len,
        "bos_token": tokens[names[special["bos"]]], "eos_token": tokens["eos"], "pad_token": tokens["pad"],
        "unk_token": tokens["unk"], "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "legacy": False, "clean_up_tokenization_spaces": False, "sp_model_kwargs": {},
        "additional_special_tokens": [SYSTEM, USER, ASSISTANT, END],
        "chat_template": JINJA_TEMPLATE}, indent=2))
    (staging / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "additional_special_tokens": [SYSTEM, USER, ASSISTANT, END]}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _save_sharded(tensors: dict[str, torch.Tensor], directory: Path, save_file) -> None:
    """model.safetensors, or model-0000i-of-0000n.safetensors and an index above SHARD_BYTES."""
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if total <= SHARD_BYTES:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if size + nbytes > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def load_export(directory: str) -> tuple[Transformer, str]:
    """An exported directory back into Clover's model (fp32, CPU), and the directory (it holds the tokenizer)."""
    from safetensors.torch import load_file

    root = Path(directory)
    known = {f.name for f in fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in json.loads((root / CLOVER_CONFIG).read_text()).items() if k in known})
    state: dict[str, torch.Tensor] = {}
    for file in sorted(root.glob("*.safetensors")):
        state.update(load_file(str(file)))
    model = Transformer(cfg)
    model.init_weights(0)
    model.load_state_dict({(k[len("model."):] if k.startswith("model.") else k): v.float() for k, v in state.items()})
    return model.eval(), directory


def load_any(path: str) -> tuple[Transformer, dict, str]:
    """A run directory or an exported directory: (model, tokenizer.json contents, tokenizer.model path)."""
    if storage.is_local(path) and (Path(path) / CLOVER_CONFIG).exists():
        model, _ = load_export(path)
        return model, json.loads((Path(path) / CLOVER_TOKENIZER).read_text()), str(Path(path) / "tokenizer.model")
    model, tokenizer_dir = load_run(path)
    meta = json.loads(storage.read_text(storage.join(tokenizer_dir, "tokenizer.json")))
    return model, meta, storage.join(tokenizer_dir, meta["model"])
