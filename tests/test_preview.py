"""`counsel-align preview`: the completion starts where the prompt ends, one BOS, EOS present, truncation counted."""

from __future__ import annotations

import pytest

import recipes.commands.preview as preview_recipe
from rewards.artifacts import atomic_write_jsonl
from rewards.training.preview import loss_masks, preview_report, render_sample, tokenize_pair
from tests.conftest import build_tiny_tokenizer

# Llama-3 style: one BOS from the template, each turn closed by the EOS token.
BOS_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def bos_tokenizer():
    tokenizer = build_tiny_tokenizer()
    tokenizer.bos_token = "<|endoftext|>"
    tokenizer.chat_template = BOS_TEMPLATE
    return tokenizer


def pair(prompt: str, chosen: str, rejected: str) -> dict:
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


ROWS = [pair("I feel anxious and I cannot sleep at night.", "That sounds really hard. What goes through your mind?",
             "Just sleep."),
        pair("My partner and I argue about money.", "That sounds lonely.", "Score: 1 " * 40),
        pair("I feel alone.", "What goes through your mind when you feel alone? " * 3, "Ok.")]


def test_completion_starts_exactly_where_the_prompt_ends(bos_tokenizer):
    for row in ROWS:
        tokens = tokenize_pair(bos_tokenizer, row)
        prompt_alone = bos_tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                                         return_dict=True)["input_ids"]
        assert tokens.prompt_ids == list(prompt_alone) and tokens.boundary_ok
        for side, (ids, mask) in loss_masks(bos_tokenizer, tokens, max_length=10_000).items():
            assert mask.index(1) == len(tokens.prompt_ids)
            assert set(mask[: len(tokens.prompt_ids)]) == {0} and set(mask[len(tokens.prompt_ids):]) == {1}
            assert bos_tokenizer.decode(ids[mask.index(1):]).startswith(row[side][0]["content"])


def test_exactly_one_bos_and_eos_present(bos_tokenizer):
    for row in ROWS:
        tokens = tokenize_pair(bos_tokenizer, row)
        for ids in tokens.sequences().values():
            assert ids.count(bos_tokenizer.bos_token_id) == 1 and ids[0] == bos_tokenizer.bos_token_id
        assert bos_tokenizer.eos_token_id in tokens.chosen_ids and bos_tokenizer.eos_token_id in tokens.rejected_ids
    report = preview_report(bos_tokenizer, ROWS, max_length=10_000)
    assert (report.n_repeated_bos, report.n_missing_eos, report.n_truncated) == (0, 0, 0)


def test_repeated_bos_and_missing_eos_are_flagged():
    tokenizer = build_tiny_tokenizer()
    tokenizer.bos_token = "<|endoftext|>"
    tokenizer.chat_template = "{{ bos_token }}" + BOS_TEMPLATE.replace(" + '<|im_end|>'", "")
    report = preview_report(tokenizer, ROWS, max_length=10_000)
    assert report.n_repeated_bos == len(ROWS) and report.n_missing_eos == len(ROWS)
    assert "REPEATED BOS" in render_sample(tokenizer, ROWS[0], 10_000)


def test_truncation_is_counted(bos_tokenizer):
    lengths = [max(len(ids) for ids in tokenize_pair(bos_tokenizer, row).sequences().values()) for row in ROWS]
    max_length = sorted(lengths)[1]  # exactly one pair is longer
    report = preview_report(bos_tokenizer, ROWS, max_length=max_length)
    assert report.n_truncated == sum(length > max_length for length in lengths) == 1
    assert report.n_eos_lost == 1 and report.n_dropped == 0
    shortest_prompt = min(len(tokenize_pair(bos_tokenizer, row).prompt_ids) for row in ROWS)
    assert preview_report(bos_tokenizer, ROWS, max_length=shortest_prompt).n_dropped == len(ROWS)
    assert "TRUNCATED" in render_sample(bos_tokenizer, ROWS[lengths.index(max(lengths))], max_length)


def test_preview_command_prints_samples_and_counts(tiny_model_dir, tmp_path, capsys):
    pairs_file = tmp_path / "pairs.jsonl"
    atomic_write_jsonl(pairs_file, ROWS)
    code = preview_recipe.main([f"model.name_or_path={tiny_model_dir}", f"preview.pairs={pairs_file}",
                                "preview.samples=2", "dpo.max_length=40"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("── sample") == 2 and "⟦" in out and "loss mask 0x" in out
    lengths = [max(len(ids) for ids in tokenize_pair(build_tiny_tokenizer(), row).sequences().values())
               for row in ROWS]
    assert f"truncated at dpo.max_length=40: {sum(n > 40 for n in lengths)} " in out


def test_preview_without_pairs_is_one_line_error(tiny_model_dir, tmp_path, capsys):
    code = preview_recipe.main([f"model.name_or_path={tiny_model_dir}", f"output_root={tmp_path}", "run=none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "counsel-align pairs run=none" in err[0]
