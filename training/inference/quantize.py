"""4-bit GPTQ of an exported model through llm-compressor (the `quantize` extra), for vLLM and small GPUs.

Weights of every linear layer except the output head become 4-bit integers in groups (W4A16,
compressed-tensors format, which `vllm serve` loads). Calibration text needs no download: the
chat-formatted prompts and responses of the built-in sample pairs. The report gives the size on disk
and the perplexity before and after on the pretraining run's own held-out token shards (the ones
`clover export` records in clover_eval.json), or on `--eval-data`: text the model never trained on.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from schemas.sample import sample_pairs
from training.inference.export import CLOVER_CONFIG, CLOVER_EVAL, CLOVER_TOKENIZER

COPIED = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
          CLOVER_CONFIG, CLOVER_TOKENIZER, CLOVER_EVAL)


@dataclass
class QuantizeConfig:
    """`clover quantize`'s config."""

    calibration_samples: int = field(default=128, metadata={"help": "calibration sequences GPTQ sees"})
    calibration_length: int = field(default=512, metadata={"help": "tokens per calibration sequence"})
    eval_samples: int = field(default=32, metadata={"help": "held-out sequences for perplexity before and after"})
    eval_data: str = field(default="", metadata={
        "help": "token shards for that perplexity (a validated `clover tokenize` output with the model's "
                "tokenizer); empty: the pretraining run's held-out shards, as recorded by `clover export`"})


def group_size(model: torch.nn.Module, largest: int = 128) -> int:
    """The largest power of two <= `largest` that divides every quantized layer's input width."""
    widths = [m.in_features for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")]
    size = largest
    while size > 1 and any(w % size for w in widths):
        size //= 2
    return size


def calibration_ids(directory: Path, samples: int, length: int, seed: int = 0) -> list[list[int]]:
    """Token ids of the sample pairs rendered as chat turns (prompt + chosen), cut to `length`."""
    import sentencepiece as spm

    from schemas.chat import prompt_ids, response_ids, template_ids

    meta = json.loads((directory / CLOVER_TOKENIZER).read_text())
    processor = spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model"))
    ids = template_ids(meta)
    rows = []
    for _, record in sample_pairs(samples, seed):
        rows.append((prompt_ids(processor.encode, ids, record["prompt"]) +
                     response_ids(processor.encode, ids, record["chosen"]))[:length])
        if len(rows) == samples:
            break
    return rows


def held_out_rows(directory: Path, samples: int, eval_data: str = "") -> tuple[list[list[int]], dict]:
    """(rows, where they came from): the first `samples` sequences of the held-out order the trainer
    evaluates (data seed 0, epoch 0), each cut to its real tokens."""
    from training.trainer.data import DataConfig, TokenStream

    record = json.loads((directory / CLOVER_EVAL).read_text()) if (directory / CLOVER_EVAL).exists() else {}
    data = eval_data or record.get("data", "")
    shards = [] if eval_data else record.get("held_out_shards", [])
    if not (eval_data or shards or (data and data != record.get("trained_on"))):
        raise ValueError(f"{directory}: no held-out data is recorded for the run it was exported from (its "
                         "eval.holdout_fraction held out no shard); pass --eval-data TOKENS (a `clover tokenize` "
                         "output the model never trained on)")
    stream = TokenStream(data, 1, DataConfig(), doc_starts=False, only=frozenset(shards) if shards else None)
    try:
        rows = [batch.tokens[0, : int(batch.num_tokens[0])].tolist()
                for batch in map(stream.micro_batch, range(min(samples, stream.per_epoch)))]
    finally:
        stream.close()
    return [r for r in rows if len(r) > 1], {"eval_data": data, "held_out_shards": shards}


def perplexity(model: torch.nn.Module, rows: list[list[int]]) -> float:
    """exp(mean next-token loss) over the rows, with a Hugging Face causal LM."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for row in rows:
            tokens = torch.tensor([row], device=device)
            logits = model(tokens).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="sum").item()
            count += len(row) - 1
    return math.exp(total / count)


def safetensors_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob("*.safetensors"))


def quantize(source: str, out: str, calibration_samples: int = 128, calibration_length: int = 512,
             eval_samples: int = 32, eval_data: str = "") -> dict:
    """GPTQ W4A16 of an exported directory into `out`, with quantize_report.json; returns the report."""
    try:
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        from datasets import Dataset
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import GPTQModifier
    except ImportError as err:
        raise RuntimeError("clover quantize needs llm-compressor: pip install 'clover[quantize]'") from err
    from transformers import AutoModelForCausalLM

    src, target = Path(source), Path(out)
    held_out, evaluated_on = held_out_rows(src, eval_samples, eval_data)
    calibration = calibration_ids(src, calibration_samples, calibration_length)
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32 if not torch.cuda.is_available()
                                                 else torch.bfloat16)
    ppl_before = perplexity(model, held_out)
    groups = group_size(model)
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=4, type="int", symmetric=True, strategy="group", group_size=groups))
    recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"])
    dataset = Dataset.from_dict({"input_ids": calibration, "attention_mask": [[1] * len(r) for r in calibration]})
    oneshot(model=model, dataset=dataset, recipe=recipe, max_seq_length=calibration_length,
            num_calibration_samples=len(calibration))
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(str(target), save_compressed=True)
    for name in COPIED:
        if (src / name).exists():
            shutil.copy2(src / name, target / name)
    reloaded = AutoModelForCausalLM.from_pretrained(str(target))
    ppl_after = perplexity(reloaded, held_out)
    report = {
        "scheme": f"W4A16 GPTQ, symmetric int4, group size {groups}, lm_head kept", "source": source,
        "calibration_samples": len(calibration), "calibration_length": calibration_length,
        "eval_samples": len(held_out), "eval_tokens": int(np.sum([len(r) - 1 for r in held_out])), **evaluated_on,
        "bytes_before": safetensors_bytes(src), "bytes_after": safetensors_bytes(target),
        "perplexity_before": ppl_before, "perplexity_after": ppl_after,
        "serve": f"vllm serve {target}",
    }
    report["size_ratio"] = report["bytes_after"] / report["bytes_before"]
    (target / "quantize_report.json").write_text(json.dumps(report, indent=2))
    return report
