"""Export: a merge matches base + adapter (LoRA and QLoRA, never into a 4-bit base), a saved model reloads to the
same outputs with its chat template and card, sizes, two adapters switched on one base, and push: a token from the
environment, a complete card, never a token in a file, never into an existing public repository unless asked.
(GGUF export: test_gguf.py.)"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from peft import PeftModel, get_peft_model

from ftlib import export, generate, models, recipe


def make_adapter(folder, model="tiny-random", quantization=None, seed=0, std=0.5):
    """Save a LoRA adapter with random B matrices: peft starts B at zero, which would make every merge a no-op."""
    base, _ = models.load(model, quantization=quantization)
    tuned = get_peft_model(base, recipe.lora_config(r=4))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in tuned.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * std)
    tuned.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"lora": make_adapter(root / "lora"), "qlora": make_adapter(root / "qlora", quantization="4bit", seed=1),
            "en": make_adapter(root / "en", seed=2), "ja": make_adapter(root / "ja", seed=3)}


def logits(model, tok, prompts=export.PROBES):
    with torch.inference_mode():
        return model(**generate._inputs(tok, prompts, None, model.device)).logits


def test_merge_matches_base_plus_adapter(tiny, adapters):
    merged, tok, check = export.merge("tiny-random", adapters["lora"])
    assert not isinstance(merged, PeftModel) and not any("lora_" in n for n, _ in merged.named_modules())
    assert check.passed and check.identical == check.total == len(export.PROBES)
    assert check.max_logit_diff < 1e-3 == check.tolerance
    assert (logits(merged, tok) - logits(*tiny)).abs().max() > 0.1  # the adapter really changes the model
    assert "identical greedy answers" in check._repr_html_() and "4 / 4" in repr(check)


def test_qlora_adapter_merges_into_the_unquantized_base(adapters):
    merged, _, check = export.merge("tiny-random", adapters["qlora"])
    assert check.passed and not models.is_quantized(merged) and merged.dtype == torch.float32
    assert type(merged.model.layers[0].self_attn.q_proj) is torch.nn.Linear


def test_merge_refuses_a_4bit_base_unless_told_to_reload(adapters):
    four_bit = models.load("tiny-random", quantization="4bit")
    with pytest.raises(export.QuantizedBaseError, match="4 or 8 bits.*silently damages"):
        export.merge(four_bit, adapters["qlora"])
    with pytest.warns(UserWarning, match="reloaded unquantized"):
        merged, _, check = export.merge(four_bit, adapters["qlora"], reload_quantized=True)
    assert check.passed and not models.is_quantized(merged)


def test_save_reload_keeps_outputs_template_and_card(adapters, tmp_path):
    merged, tok, _ = export.merge("tiny-random", adapters["lora"])
    card = {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "apache-2.0",
            "adapter": str(adapters["lora"]), "data": "support questions (en)", "training": {"method": "lora", "r": 4},
            "metrics": {"fact hit rate": 0.42}}
    folder = export.save(merged, tok, tmp_path / "merged", card=card)
    assert (folder / "model.safetensors").is_file()
    model, tok2 = export.reload(folder)
    assert tok2.chat_template == tok.chat_template and tok2.pad_token_id == tok.pad_token_id
    assert torch.equal(logits(model, tok2), logits(merged, tok))
    texts = generate.generate(merged, tok, export.PROBES, 12).texts
    assert generate.generate(model, tok2, export.PROBES, 12).texts == texts
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in readme and "license: apache-2.0" in readme
    assert all(f"## {s}" in readme for s in ["Base model", "License", "Adapter", "Data", "Training", "Metrics",
                                              "How to use"])
    assert "| fact hit rate | 0.42 |" in readme

    table = export.sizes(adapters["lora"], folder)
    assert list(table.index) == ["LoRA adapter (needs its base)", "merged model (float32)", "merged model, 4-bit NF4"]
    adapter_mb, merged_mb, four_bit_mb = table["MB on disk"]
    assert 0 < adapter_mb < merged_mb and 0 < four_bit_mb < merged_mb and table["MB in memory"].iloc[2] > 0


def test_two_adapters_switch_on_one_base(tiny, adapters):
    model, tok = models.load("tiny-random")
    both = export.load_adapters(model, {"en": adapters["en"], "ja": adapters["ja"]})
    assert export.adapter_names(both) == ["en", "ja"] and both.active_adapter == "en"
    table = export.side_by_side(both, tok, export.PROBES[:2], max_new_tokens=8)
    assert list(table.columns) == ["en", "ja", "base"] and list(table.index) == export.PROBES[:2]
    assert (table["en"] != table["ja"]).all() and (table["en"] != table["base"]).all()
    assert table["base"].tolist() == generate.generate(*tiny, export.PROBES[:2], 8).texts
    both.set_adapter("ja")
    with both.disable_adapter():
        assert torch.equal(logits(both, tok), logits(*tiny))
    assert not torch.equal(logits(both, tok), logits(*tiny))
    with pytest.raises(ValueError, match="unknown adapter 'fr'; loaded: base, en, ja"):
        export.answer_with(both, tok, ["Hi"], "fr")


def test_push_without_a_token_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert export.hf_token() is None
    with pytest.raises(RuntimeError, match="no Hugging Face token.*Secrets > add HF_TOKEN.*Kaggle.*export HF_TOKEN"):
        export.push(tmp_path, "someone/model")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert export.hf_token() == "hf_test"


def test_the_token_comes_from_kaggle_secrets_too(monkeypatch):
    class UserSecretsClient:  # what Kaggle's kernels provide as kaggle_secrets
        def get_secret(self, label):
            return {"HF_TOKEN": "hf_kaggle"}[label]

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setitem(sys.modules, "kaggle_secrets", SimpleNamespace(UserSecretsClient=UserSecretsClient))
    assert export.hf_token() == "hf_kaggle"


TOKEN = "hf_" + "aB3" * 12
CARD = {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "apache-2.0", "data": "support questions",
        "metrics": {"fact hit rate": 0.9}}


class FakeHub:
    """Stands in for huggingface_hub.HfApi: knows some repositories (name -> private), records what is sent."""

    repos: dict = {}
    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("token", token))

    def repo_exists(self, repo_id, repo_type=None):
        return repo_id in self.repos

    def repo_info(self, repo_id, repo_type=None):
        return SimpleNamespace(private=self.repos[repo_id])

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create", repo_id, private))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type=None, commit_message=None):
        self.calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(FakeHub, "repos", {"me/public-bot": False, "me/private-bot": True})
    monkeypatch.setattr(FakeHub, "calls", [])
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text(export.model_card(CARD, "merged"))
    return folder


def uploads():
    return [call for call in FakeHub.calls if call[0] == "upload"]


def test_push_never_uploads_into_an_existing_public_repo_unless_asked(hub):
    with pytest.raises(PermissionError, match="me/public-bot is an existing PUBLIC repository.*allow_public=True"):
        export.push(hub, "me/public-bot")
    assert uploads() == [] and ("token", TOKEN) in FakeHub.calls
    assert export.push(hub, "me/public-bot", allow_public=True) == "https://huggingface.co/me/public-bot"
    export.push(hub, "me/private-bot")
    export.push(hub, "me/new-bot")
    assert ("create", "me/new-bot", True) in FakeHub.calls  # a new repository is private unless private=False
    assert uploads() == [("upload", repo, ["README.md", "config.json"])
                         for repo in ["me/public-bot", "me/private-bot", "me/new-bot"]]


def test_push_refuses_an_incomplete_card_or_a_token_in_a_file(hub):
    (hub / "README.md").write_text(export.model_card({k: v for k, v in CARD.items() if k != "license"}, "merged"))
    with pytest.raises(ValueError, match="README.md: the model card lacks license"):
        export.push(hub, "me/new-bot")
    (hub / "README.md").write_text(export.model_card(CARD, "merged"))
    (hub / "notes.txt").write_text(f"token = {TOKEN}")
    with pytest.raises(ValueError, match="notes.txt contains what looks like a Hugging Face token"):
        export.push(hub, "me/new-bot")
    (hub / "notes.txt").write_text("hf_short and a secret that is mine: " + "x" * 40)
    export.push(hub, "me/new-bot")
    assert len(uploads()) == 1
    with pytest.raises(ValueError, match="the model card contains what looks like a Hugging Face token"):
        export.model_card({**CARD, "training": {"token": TOKEN}}, "merged")


@pytest.mark.slow
def test_smollm2_merge_matches_base_plus_adapter(smollm2, tmp_path):
    adapter = make_adapter(tmp_path / "adapter", "smollm2-135m", std=0.01)
    merged, _, check = export.merge("smollm2-135m", adapter, probes=export.PROBES[::3], max_new_tokens=8)
    assert check.passed and check.identical == check.total == 2, check
    weight = merged.model.layers[0].self_attn.q_proj.weight
    assert (weight - smollm2[0].model.layers[0].self_attn.q_proj.weight).abs().max() > 1e-3  # the adapter was merged


def test_merge_reads_the_base_from_the_adapter_and_refuses_another(adapters, tmp_path):
    recorded = export.adapter_base(adapters["lora"])
    assert Path(recorded).name == "tiny-random"
    assert export.base_for(adapters["lora"], "auto") == "tiny-random"  # "auto" never re-decides the base
    assert export.base_for(adapters["lora"], "tiny-random") == "tiny-random"
    merged, _, check = export.merge("auto", adapters["lora"])
    assert check.passed
    # a Japanese adapter of the GPU default, merged with "auto" on a machine that picks another model
    config = json.loads((adapters["ja"] / "adapter_config.json").read_text())
    foreign = tmp_path / "ja"
    foreign.mkdir()
    (foreign / "adapter_config.json").write_text(json.dumps(config | {
        "base_model_name_or_path": "SakanaAI/TinySwallow-1.5B-Instruct"}))
    assert export.base_for(foreign, "auto") == "SakanaAI/TinySwallow-1.5B-Instruct"
    assert export.base_for(foreign, "tinyswallow-1.5b") == "tinyswallow-1.5b"
    for wrong in ("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", "tiny-random"):
        with pytest.raises(export.BaseMismatchError, match="trained on SakanaAI/TinySwallow-1.5B-Instruct, not on"):
            export.merge(wrong, foreign)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        export.adapter_base(tmp_path)
