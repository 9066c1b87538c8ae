"""Per-principle multi-head reward model: loss, data accounting, weight overrides at inference, `score`."""

import json

import pytest
import torch

from rewards.errors import UserError
from rewards.reward_models.data import tokenize_pairs
from rewards.reward_models.multihead import principle_bt_loss

WARM = "That sounds hard. How do you feel?"
COLD = "Sleep more."
PROMPTS = ["I feel anxious and I cannot sleep at night.", "My partner and I argue about money and I feel alone.",
           "I am tired.", "Work is too much."]
# The judge prefers WARM on empathy and COLD on clarity: the two heads must learn opposite rankings.
SCORES = {WARM: {"empathy": 5, "clarity": 2}, COLD: {"empathy": 1, "clarity": 3}}
HEADS = ["empathy", "clarity"]


def crafted_pairs(n: int = 8) -> list[dict]:
    rows = []
    for i in range(n):
        first, second = (WARM, COLD) if i % 2 == 0 else (COLD, WARM)
        rows.append({
            "prompt": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "chosen": [{"role": "assistant", "content": first}],
            "rejected": [{"role": "assistant", "content": second}],
            "margin": 0.5, "topic": "sleep",
            **{f"chosen_{k}": v for k, v in SCORES[first].items()},
            **{f"rejected_{k}": v for k, v in SCORES[second].items()},
        })
    return rows


def test_loss_ignores_undecided_principles_and_rewards_agreement():
    chosen = torch.tensor([[2.0, 0.0], [0.0, 5.0]], requires_grad=True)
    rejected = torch.zeros(2, 2)
    diff = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # principle 1 never decided: its head gets no gradient
    loss = principle_bt_loss(chosen, rejected, diff)
    loss.backward()
    assert chosen.grad[:, 1].abs().sum() == 0
    assert chosen.grad[0, 0] < 0 and chosen.grad[1, 0] > 0  # push the judged-better side up
    agree = principle_bt_loss(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    disagree = principle_bt_loss(torch.tensor([[-1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    assert agree < disagree
    assert principle_bt_loss(chosen, rejected, torch.zeros(2, 2)).item() == 0.0
    margin = principle_bt_loss(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[2.0, 0.0]]), 0.5)
    assert margin > agree  # a judged gap of 2 asks for a reward gap above 1


def test_pair_accounting_names_missing_columns_and_counts_drops(tiny_tokenizer):
    rows = crafted_pairs(6)
    with pytest.raises(UserError, match="chosen_clarity"):
        tokenize_pairs([{k: v for k, v in r.items() if k != "chosen_clarity"} for r in rows], tiny_tokenizer, 256,
                       principle_ids=HEADS)
    rows[0]["chosen"] = [{"role": "assistant", "content": "  "}]
    rows[1]["rejected"] = [{"role": "assistant", "content": "word " * 300}]
    kept, report = tokenize_pairs(rows, tiny_tokenizer, 64, principle_ids=HEADS)
    assert report.as_dict()["dropped"] == {"empty response": 1, "over max_length=64": 1}
    assert len(kept) == report.kept == 4 and report.truncated == 0
    kept, report = tokenize_pairs(rows, tiny_tokenizer, 64, overflow="truncate", principle_ids=HEADS)
    assert report.truncated == 1 and report.kept == 5 and max(len(r["rejected_ids"]) for r in kept) == 64
    assert kept[0]["principle_diff"] == [-4.0, 1.0]  # row 1: COLD chosen over WARM


@pytest.fixture(scope="module")
def multihead(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    from rewards.reward_models.multihead import train_multihead_reward_model

    rows, _ = tokenize_pairs(crafted_pairs(), tiny_tokenizer, 256, principle_ids=HEADS)
    cfg = {"peft": "none", "learning_rate": 5e-3, "max_steps": 12, "per_device_train_batch_size": 8,
           "lr_scheduler_type": "constant", "save_steps": 1000, "use_cpu": True, "margin_scale": 0.5}
    trainer = train_multihead_reward_model(str(tiny_model_dir), tiny_tokenizer, rows, HEADS, cfg,
                                           tmp_path_factory.mktemp("mh") / "ckpt", [], seed=0)
    trainer.train()
    return trainer


def test_zero_weight_flips_the_aggregate_as_the_heads_predict(multihead, tiny_tokenizer):
    from rewards.reward_models.scorer import RewardScorer

    scorer = RewardScorer(multihead.model, tiny_tokenizer, weights={"empathy": 3.0, "clarity": 1.0})
    prompt = [{"role": "user", "content": "I feel alone at night."}]
    heads = scorer.head_scores([prompt, prompt], [WARM, COLD])
    gap = heads[0] - heads[1]  # WARM minus COLD, per head
    assert gap[0] > 0 > gap[1], f"heads did not learn opposite rankings: {gap.tolist()}"
    before = scorer.score([prompt, prompt], [WARM, COLD])
    assert before[0] > before[1], "with empathy weighted 3:1 the warm reply must win"
    after = scorer.with_weights({"empathy": 0.0}).score([prompt, prompt], [WARM, COLD])
    # With empathy off only the clarity head counts, and it prefers the cold reply.
    assert after[0] < after[1]
    assert after[0] - after[1] == pytest.approx(float(gap[1]), abs=1e-4)
    assert scorer.weights["empathy"] == 3.0  # the original scorer is unchanged
    with pytest.raises(UserError, match="unknown principle id"):
        scorer.with_weights({"empathy_typo": 1.0})


def test_export_reload_and_score_command(multihead, tiny_tokenizer, tmp_path, capsys):
    from recipes.commands.score import main as score_main
    from rewards import load_reward
    from rewards.reward_models.io import export_reward_model
    from rewards.reward_models.scorer import RewardScorer

    out = export_reward_model(multihead.model, tiny_tokenizer, tmp_path / "rm", base_model="tiny",
                              weights={"empathy": 3.0, "clarity": 1.0}, max_length=256,
                              provenance={"rubric_sha256": "r" * 64, "pairs_sha256": "p" * 64},
                              metrics={"rm_accuracy": 1.0})
    card = (out / "README.md").read_text()
    assert "r" * 64 in card and "p" * 64 in card and "rm_accuracy" in card and "base model" in card
    prompt = [{"role": "user", "content": PROMPTS[0]}]
    before = RewardScorer(multihead.model, tiny_tokenizer).head_scores([prompt, prompt], [WARM, COLD])
    reloaded = load_reward(out, device="cpu")
    assert reloaded.heads == HEADS and reloaded.weights == {"empathy": 3.0, "clarity": 1.0}
    assert torch.allclose(reloaded.head_scores([prompt, prompt], [WARM, COLD]), before, atol=1e-4)
    assert score_main(["--model", str(out), "--prompt", PROMPTS[0], "--response", WARM, "--json",
                       "principles.weights.clarity=0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["weights"] == {"empathy": 3.0, "clarity": 0.0}
    assert printed["scores"]["aggregate"] == pytest.approx(printed["scores"]["empathy"], abs=1e-4)
    assert score_main(["--model", str(out), "--prompt", "x", "--response", "y", "principles.weights.nope=1"]) == 2
    assert "unknown principle id" in capsys.readouterr().err



def test_reward_stage_trains_one_head_per_principle_and_counts_bad_pairs(tiny_model_dir, rubric, tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    from recipes.commands.score import main as score_main
    from recipes.reward import main
    from rewards.artifacts import atomic_write_json
    from tests.test_reward_eval import held_out

    rows = held_out()  # 6 pairs: one with an empty reply, one far over 128 tokens
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:4])}).save_to_disk(
        str(tmp_path / "run" / "pairs" / "dataset"))
    atomic_write_json(tmp_path / "run" / "pairs" / "manifest.json",
                      {"stage": "pairs", "outputs_sha256": "p" * 64, "rubric_sha256": "r" * 64})
    assert main([f"model.name_or_path={tiny_model_dir}", f"output_root={tmp_path}", "run=run", "device=cpu",
                 "wandb.mode=disabled", "reward=multihead", "reward.max_length=128",
                 "reward.num_train_epochs=1", "reward.per_device_train_batch_size=2",
                 "reward.save_steps=1000"]) == 0
    stage = tmp_path / "run" / "reward"
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["counts"]["train_data"] == {"total": 6, "kept": 4, "truncated": 0, "n_dropped": 2,
                                                "dropped": {"empty response": 1, "over max_length=128": 1}}
    assert "4/6 pairs kept" in capsys.readouterr().out
    config = json.loads((stage / "model" / "reward_config.json").read_text())
    assert config["kind"] == "multihead" and config["heads"] == rubric.ids
    assert config["weights"] == rubric.weights()
    card = (stage / "model" / "README.md").read_text()
    assert "p" * 64 in card and "r" * 64 in card and str(tiny_model_dir) in card
    assert set(manifest["metrics"]["principle_accuracy"]) == set(rubric.ids)
    assert score_main(["--prompt", "I feel alone.", "--response", "Who do you miss?", f"output_root={tmp_path}",
                       "run=run", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert all(pid in table for pid in rubric.ids) and "aggregate" in table


def test_score_without_a_trained_model_is_a_one_line_error(tmp_path, capsys):
    from recipes.commands.score import main as score_main

    assert score_main(["--prompt", "x", "--response", "y", f"output_root={tmp_path}", "run=none"]) == 2
    assert "no trained reward model" in capsys.readouterr().err
