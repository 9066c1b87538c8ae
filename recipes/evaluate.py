"""Stage 6: on held-out prompts, compare the DPO policy with its base model."""

from __future__ import annotations

import statistics

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from recipes.judge import build_judge
from rewards.artifacts import atomic_write_json, atomic_write_jsonl, read_jsonl
from rewards.evaluation import judged_comparison, principle_means, win_rate
from rewards.generation import batched, chat_messages, generate_texts, render_prompts
from rewards.judges import JudgeItem
from rewards.models import load_causal_lm, load_tokenizer
from rewards.reward_model import RewardScorer
from rewards.rubric import load_rubric


def policy_responses(cfg: DictConfig, adapter_dir, prompts: list[dict]) -> dict[str, list[str]]:
    """Greedy replies of the base model and of the DPO policy (base + adapter) to each prompt."""
    from peft import PeftModel

    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    base = load_causal_lm(cfg.model.name_or_path, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
    policy = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    replies: dict[str, list[str]] = {"base": [], "dpo": []}
    for batch in batched(prompts, cfg.evaluate.batch_size):
        rendered = render_prompts(tokenizer, [chat_messages(p["text"]) for p in batch])
        with policy.disable_adapter():
            replies["base"] += [o[0]["text"] for o in generate_texts(policy, tokenizer, rendered,
                                                                      cfg.evaluate.max_new_tokens)]
        replies["dpo"] += [o[0]["text"] for o in generate_texts(policy, tokenizer, rendered,
                                                                 cfg.evaluate.max_new_tokens)]
    return replies


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    prompts = [p for p in read_jsonl(ctx.input_dir("generate") / "prompts.jsonl") if p["split"] == "test"]
    replies = policy_responses(cfg, ctx.input_dir("dpo") / "model", prompts)
    scorer = RewardScorer.from_pretrained(ctx.input_dir("reward") / "model", base_model=cfg.model.name_or_path,
                                          device=cfg.device, dtype=cfg.model.dtype)
    conversations = [[{"role": "user", "content": p["text"]}] for p in prompts]
    rewards = {name: scorer.score(conversations, texts) for name, texts in replies.items()}
    rubric = load_rubric(project_path(cfg.principles.path))
    judge = build_judge(cfg, rubric)
    rows, verdicts = [], []
    for index, prompt in enumerate(prompts):
        base_reply, dpo_reply = replies["base"][index], replies["dpo"][index]
        outcome = judged_comparison(judge, prompt["text"], dpo_reply, base_reply)
        verdicts.append(outcome.verdict(cfg.evaluate.tie_band))
        rows.append({
            "prompt_id": prompt["id"], "topic": prompt["topic"], "prompt": prompt["text"],
            "base": base_reply, "dpo": dpo_reply,
            "base_reward": rewards["base"][index], "dpo_reward": rewards["dpo"][index],
            "base_principles": judge.score([JudgeItem(prompt["text"], base_reply)])[0],
            "dpo_principles": judge.score([JudgeItem(prompt["text"], dpo_reply)])[0],
            "p_dpo_better_as_a": round(outcome.p_first_as_a, 4),
            "p_dpo_better_as_b": round(outcome.p_first_as_b, 4),
            "verdict": verdicts[-1],
        })
    atomic_write_jsonl(ctx.dir / "eval.jsonl", rows)
    metrics = {
        "base_score": round(statistics.mean(rewards["base"]), 4) if rows else None,
        "dpo_score": round(statistics.mean(rewards["dpo"]), 4) if rows else None,
        **win_rate(verdicts),
        "base_principles": principle_means([r["base_principles"] for r in rows]),
        "dpo_principles": principle_means([r["dpo_principles"] for r in rows]),
        "identical_replies": sum(r["base"] == r["dpo"] for r in rows),
        "judge": OmegaConf.to_container(cfg.judge, resolve=True),
    }
    atomic_write_json(ctx.dir / "metrics.json", metrics)
    return {"counts": {"n_eval_prompts": len(rows)}, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "evaluate", work, ["model", "judge", "evaluate", "principles", "device"],
                     inputs=["generate", "reward", "dpo"], uses_rubric=True)


main = entry("evaluate", run)

if __name__ == "__main__":
    raise SystemExit(main())
