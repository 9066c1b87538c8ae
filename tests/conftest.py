"""Fixtures: a tiny byte-level tokenizer with a ChatML template and a tiny random Llama (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "I feel anxious and I cannot sleep at night.",
    "That sounds really hard. What goes through your mind when you lie awake?",
    "Score: 1 Score: 2 Score: 3 Score: 4 Score: 5 Better reply: A Better reply: B",
    "You are a counselor. Rate the reply on empathy, clarity and harm avoidance.",
    "My partner and I argue about money and I feel alone.",
]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_llama(tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny random Llama + tokenizer folder, usable as ``model.name_or_path``."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def with_trainer_callback(monkeypatch, module, builder: str, callback) -> None:
    """Make ``module.<builder>`` add ``callback`` to every trainer it builds (a builder may return (trainer, ...))."""
    original = getattr(module, builder)

    def build(*args, **kwargs):
        built = original(*args, **kwargs)
        (built[0] if isinstance(built, tuple) else built).add_callback(callback)
        return built

    monkeypatch.setattr(module, builder, build)


def count_reward_calls(monkeypatch) -> list[int]:
    """From now on every ``RewardScorer`` call appends how many completions it scored to the returned list."""
    from rewards.reward_models.scorer import RewardScorer

    calls: list[int] = []
    original = RewardScorer.__call__

    def counting(self, prompts, completions, **kwargs):
        calls.append(len(completions))
        return original(self, prompts, completions, **kwargs)

    monkeypatch.setattr(RewardScorer, "__call__", counting)
    return calls


@pytest.fixture(scope="session")
def rubric():
    from rewards.rubric import load_rubric

    return load_rubric(PROJECT_ROOT / "principles" / "psychocounsel.yaml")


# CounselChat-shaped rows written by us: (question link, topic, split, question, [(answer, upvotes), ...]).
TINY_COUNSELCHAT = [
    ("q/1", "anxiety", "val", "I panic before every exam and cannot breathe.",
     [("That sounds frightening. What happens in your body just before the panic starts?", 3),
      ("Relax.", 0), ("Breathing slowly can help; would you like to try it together?", 1)]),
    ("q/2", "sleep", "val", "I wake up at 3am every night and my mind races.",
     [("Waking with a racing mind is exhausting. What thoughts come first?", 2), ("Take a pill.", 0)]),
    ("q/3", "grief", "val", "My dog died last week and I cannot stop crying.",
     [("Losing a companion hurts deeply; crying is part of grieving. What do you miss most?", 4),
      ("It was only a dog.", 0), ("I am sorry for your loss.", 1)]),
    ("q/4", "work", "train", "My boss yells at me in meetings.",
     [("Being yelled at in front of others is humiliating. How do you respond?", 2), ("Quit.", 0)]),
]


def write_tiny_counselchat(path: Path) -> Path:
    """A tiny CSV with CounselChat's columns (our own text), for the calibrate stage."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["questionLink", "topic", "split", "questionText", "answerText", "upvotes"])
        for link, topic, split, question, answers in TINY_COUNSELCHAT:
            writer.writerows([link, topic, split, question, answer, votes] for answer, votes in answers)
    return path


def tiny_overrides(model_dir: Path, output_root: Path, run: str = "t") -> list[str]:
    """Hydra overrides that run the whole pipeline on the tiny model in well under a minute."""
    calibration = write_tiny_counselchat(Path(output_root) / "tiny_counselchat.csv")
    return [
        f"calibration.source={calibration}",
        f"model.name_or_path={model_dir}", f"output_root={output_root}", f"run={run}",
        "data.max_train_prompts=6", "data.max_test_prompts=3",
        "generate.max_new_tokens=12", "evaluate.max_new_tokens=12", "generate.batch_size=4",
        "dpo.max_length=256", "reward.max_length=256",
        "dpo.per_device_train_batch_size=2", "reward.per_device_train_batch_size=2",
        "dpo.gradient_accumulation_steps=1", "reward.gradient_accumulation_steps=1",
        "reward.num_train_epochs=1", "dpo.save_steps=1000", "reward.save_steps=1000",
        "pairs.margin=0.0", "wandb.mode=disabled", "device=cpu",
    ]
