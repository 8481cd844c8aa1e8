"""4-bit GPTQ of an exported model through llm-compressor (the `quantize` extra), for vLLM and small GPUs.

Weights of every linear layer except the output head become 4-bit integers in groups (W4A16,
compressed-tensors format, which `vllm serve` loads). Calibration text needs no download: the
chat-formatted prompts and responses of the built-in sample pairs, or rows of a token-shard dataset.
The report gives the size on disk and the perplexity before and after on held-out text.
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
from training.inference.export import CLOVER_CONFIG, CLOVER_TOKENIZER

COPIED = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
          CLOVER_CONFIG, CLOVER_TOKENIZER)


@dataclass
class QuantizeConfig:
    """`clover quantize`'s config."""

    calibration_samples: int = field(default=128, metadata={"help": "calibration sequences GPTQ sees"})
    calibration_length: int = field(default=512, metadata={"help": "tokens per calibration sequence"})
    eval_samples: int = field(default=32, metadata={"help": "held-out sequences for perplexity before and after"})


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
             eval_samples: int = 32) -> dict:
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
    rows = calibration_ids(src, calibration_samples + eval_samples, calibration_length)
    calibration, held_out = rows[:calibration_samples], rows[calibration_samples:]
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
        "eval_samples": len(held_out), "eval_tokens": int(np.sum([len(r) - 1 for r in held_out])),
        "bytes_before": safetensors_bytes(src), "bytes_after": safetensors_bytes(target),
        "perplexity_before": ppl_before, "perplexity_after": ppl_after,
        "serve": f"vllm serve {target}",
    }
    report["size_ratio"] = report["bytes_after"] / report["bytes_before"]
    (target / "quantize_report.json").write_text(json.dumps(report, indent=2))
    return report
