"""Export: transformers loads the directory; logits within 1e-4 and greedy decoding identical; tokenizer and
chat template agree with Clover's; `clover generate` prints the completion only."""

from __future__ import annotations

import json

import pytest
import sentencepiece as spm
import torch

from schemas.chat import prompt_ids, template_ids
from tests.token_shards import docstring_tokenizer, write_token_shards
from training.inference.export import export, load_any, load_run
from training.inference.generate import generate
from training.trainer.pretrain import TrainConfig, train

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def exported(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    tokenizer = docstring_tokenizer(spark, root)
    data = write_token_shards(root / "tokens", vocab=700, shards=4)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["tokenizer"]["path"] = str(tokenizer)
    (data / "manifest.json").write_text(json.dumps(manifest))
    cfg = TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=1, max_steps=20, tensorboard=False)
    cfg.schedule.warmup_steps, cfg.schedule.max_lr = 2, 1e-2
    cfg.eval.holdout_fraction = 0.25  # one of the four shards: quantize's perplexity is measured on it
    train(cfg, str(data), str(root / "run"))
    out = export(str(root / "run"), str(root / "hf"), dtype="float32")
    return root, out, tokenizer


def test_transformers_logits_and_greedy_decoding_match(exported):
    root, out, _ = exported
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    clover, _ = load_run(str(root / "run"))
    tokens = torch.randint(4, 700, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (hf(tokens).logits - clover(tokens)).abs().max().item()
    assert difference < 1e-4
    prompt = tokens[0, :12]
    with torch.no_grad():
        hf_ids = hf.generate(prompt[None], max_new_tokens=20, do_sample=False, eos_token_id=None,
                             pad_token_id=0)[0, 12:].tolist()
    [(ours, reason)] = generate(clover, prompt.tolist(), 20, temperature=0.0)
    assert ours == hf_ids and len(ours) == 20 and reason == "length"


def test_config_and_generation_config(exported):
    _, out, _ = exported
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 500000 and config["num_key_value_heads"] == 2 and not config["tie_word_embeddings"]
    generation = json.loads((out / "generation_config.json").read_text())
    meta = json.loads((out / "clover_tokenizer.json").read_text())
    assert generation["eos_token_id"] == [meta["special_ids"]["eos"], meta["control_ids"]["<|end|>"]]


def test_tokenizer_and_chat_template_match_clover(exported):
    _, out, tokenizer = exported
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer / "tokenizer.model"))
    for text in ["Return the value of x.\n  Indented 123", " leading space", "Ünïcödé — café 🦜"]:
        assert hf.encode(text, add_special_tokens=False) == processor.encode(text), text
    # Like every Hugging Face chat tokenizer, transformers parses control-token strings found in text;
    # Clover's own pipeline never does (docs/alignment.md).
    assert hf.encode("a<|user|>b", add_special_tokens=False).count(5) == 1
    meta = json.loads((tokenizer / "tokenizer.json").read_text())
    rendered = hf.apply_chat_template([{"role": "user", "content": "Explain zip."}], add_generation_prompt=True,
                                      tokenize=True, return_dict=True)["input_ids"]
    assert rendered == prompt_ids(processor.encode, template_ids(meta), "Explain zip.")


def test_generate_prints_only_the_completion(exported, capsys):
    from jobs.cli import main

    root, out, _ = exported
    for source in (str(root / "run"), str(out)):
        assert main(["generate", source, "--prompt", "Explain zip.", "--temperature", "0", "--max-new-tokens", "8"]) == 0
        printed = capsys.readouterr().out.rstrip("\n")
        model, meta, tokenizer_model = load_any(source)
        processor = spm.SentencePieceProcessor(model_file=tokenizer_model)
        ids = prompt_ids(processor.encode, template_ids(meta), "Explain zip.")
        [(tokens, _)] = generate(model, ids, 8, stop_ids=(meta["special_ids"]["eos"], meta["control_ids"]["<|end|>"]))
        assert printed == processor.decode(tokens) and "Explain zip." not in printed
