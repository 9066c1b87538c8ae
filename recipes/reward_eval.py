"""`counsel-align reward-eval`: what the trained reward model rewards, beside length-only and base-model
log-likelihood baselines; per principle, topic and length bucket; CounselChat upvote pairs; plots.

Writes outputs/<run>/reward_eval/{metrics.json, report.md, score_histogram.png, calibration.png}.
"""

from __future__ import annotations

from omegaconf import DictConfig

from recipes._entry import StageContext, entry, project_path, run_stage
from rewards.artifacts import atomic_write_json, atomic_write_text
from rewards.errors import UserError
from rewards.log import get_logger
from rewards.reward_models.data import PAIR_COLUMNS, require_columns
from rewards.reward_models.evaluation import (
    LogLikelihoodBaseline,
    breakdown,
    calibration,
    clean_pairs,
    evaluate_counselchat,
    length_scores,
    plot_calibration,
    plot_histogram,
    score_pairs,
)
from rewards.reward_models.io import load_reward
from rewards.rubric import load_rubric

log = get_logger(__name__)

BASELINES = ("reward_model", "length_baseline", "loglik_baseline")


def held_out_pairs(ctx: StageContext) -> tuple[list[dict], str]:
    from datasets import load_from_disk

    path = ctx.input_dir("pairs") / "dataset"
    dataset = load_from_disk(str(path))
    if "test" not in dataset:
        raise UserError(f"{path}: no 'test' split; rebuild the pairs with `counsel-align pairs`")
    require_columns(dataset["test"].column_names, PAIR_COLUMNS, str(path))
    return list(dataset["test"]), str(path)


def loglik_breakdown(cfg: DictConfig, pairs: list[dict], max_length: int, principle_ids: list[str]) -> dict:
    from rewards.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(cfg.model.name_or_path, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    baseline = LogLikelihoodBaseline(model, tokenizer, max_length, cfg.reward_eval.batch_size)
    chosen, rejected = score_pairs(baseline, pairs)
    return breakdown(pairs, chosen, rejected, principle_ids)


def work(ctx: StageContext) -> dict:
    cfg, settings = ctx.cfg, ctx.cfg.reward_eval
    rubric = load_rubric(project_path(cfg.principles.path))
    rows, source = held_out_pairs(ctx)
    scorer = load_reward(ctx.input_dir("reward") / "model", trust_remote_code=cfg.model.trust_remote_code,
                         device=cfg.device, batch_size=settings.batch_size)
    pairs, data = clean_pairs(rows, scorer.tokenizer, scorer.max_length, source)
    log.info(f"reward-eval: held-out pairs: {data.summary()} "
             f"(over max_length={scorer.max_length}: scored on their last tokens)")
    if not pairs:
        raise UserError(f"{source}: no held-out pairs to evaluate ({data.summary()}); raise data.max_test_prompts")
    chosen, rejected = score_pairs(scorer.score, pairs)
    metrics: dict = {"data": data.as_dict(), "reward_model": breakdown(pairs, chosen, rejected, rubric.ids),
                     "length_baseline": breakdown(pairs, *score_pairs(length_scores, pairs), rubric.ids),
                     "calibration": calibration(chosen, rejected), "heads": scorer.heads}
    if settings.loglik_baseline:
        metrics["loglik_baseline"] = loglik_breakdown(cfg, pairs, scorer.max_length, rubric.ids)
    if len(scorer.heads) > 1:
        from rewards.reward_models.multihead import principle_accuracy

        metrics["per_head"] = principle_accuracy(scorer, pairs, rubric.ids)
    if settings.counselchat:
        source_cc = str(project_path(settings.counselchat)) if project_path(settings.counselchat).exists() \
            else settings.counselchat
        metrics["counselchat"] = evaluate_counselchat(scorer, source_cc, settings.counselchat_split,
                                                      settings.counselchat_max_pairs, cfg.seed)
    plot_histogram(chosen, rejected, ctx.dir / "score_histogram.png")
    plot_calibration(metrics["calibration"], ctx.dir / "calibration.png")
    atomic_write_json(ctx.dir / "metrics.json", metrics)
    atomic_write_text(ctx.dir / "report.md", render_report(cfg.run, metrics))
    log.info(summary_line(metrics))
    headline = {name: metrics[name]["accuracy"] for name in BASELINES if name in metrics}
    if "counselchat" in metrics:
        headline["counselchat_accuracy"] = metrics["counselchat"]["accuracy"]
    return {"counts": {"n_pairs": len(pairs), "data": data.as_dict()}, "metrics": headline}


def summary_line(metrics: dict) -> str:
    parts = [f"{name.replace('_', ' ')} {metrics[name]['accuracy']}" for name in BASELINES if name in metrics]
    line = f"reward-eval: held-out accuracy: {', '.join(parts)} on {metrics['reward_model']['n']} pairs"
    if "counselchat" in metrics:
        cc = metrics["counselchat"]
        line += (f"; CounselChat ({cc['split']}) {cc['accuracy']} [95% CI {cc['ci95_by_question'][0]}-"
                 f"{cc['ci95_by_question'][1]}] vs length {cc['length_baseline']} on {cc['pairs']} pairs")
    return line


def _table(metrics: dict, key: str, title: str) -> list[str]:
    columns = [name for name in BASELINES if name in metrics]
    names = sorted({n for c in columns for n in metrics[c][key]})
    if not names:
        return []
    lines = [f"\n### {title}\n", "| | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name in names:
        cells = [str(metrics[c][key].get(name, {}).get("accuracy", "")) for c in columns]
        count = metrics["reward_model"][key].get(name, {}).get("n", 0)
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    return lines


def render_report(run: str, metrics: dict) -> str:
    columns = [name for name in BASELINES if name in metrics]
    data = metrics["data"]
    lines = [f"# Reward model evaluation — run `{run}`\n",
             f"Heads: {', '.join(metrics['heads'])}. Pairwise accuracy on held-out pairs (ties count half).\n",
             "| | n | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns),
             f"| overall | {metrics['reward_model']['n']} | "
             + " | ".join(str(metrics[c]["accuracy"]) for c in columns) + " |"]
    lines += _table(metrics, "by_principle", "Per principle (pairs where the judge scored it differently)")
    lines += _table(metrics, "by_topic", "Per topic")
    lines += _table(metrics, "by_length", "By length")
    if "per_head" in metrics:
        lines += ["\n### Per-principle heads (each head ranks by itself)\n", "| principle | n | head accuracy |",
                  "|---|---|---|"]
        lines += [f"| {pid} | {v['n']} | {v['accuracy']} |" for pid, v in metrics["per_head"].items()]
    if "counselchat" in metrics:
        cc = metrics["counselchat"]
        lines += ["\n## CounselChat upvote pairs\n",
                  f"Split `{cc['split']}`: {cc['pairs']} of {cc['pairs_available']} pairs from {cc['questions']} "
                  f"questions. Accuracy **{cc['accuracy']}** (95% CI by question {cc['ci95_by_question']}); "
                  f"length-only baseline {cc['length_baseline']}. Data: {cc['data']}."]
    lines += ["\n## Data accounting\n",
              f"{data['kept']} of {data['total']} held-out pairs scored; dropped: {data['dropped'] or 'none'}; "
              f"{data['truncated']} over max_length (scored on their last tokens).",
              f"\n## Plots\n\n![score histogram](score_histogram.png)\n\n![calibration](calibration.png)\n\n"
              f"Calibration ECE: {metrics['calibration']['ece']}."]
    return "\n".join(lines) + "\n"


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "reward_eval", work)


main = entry("reward-eval", run)

if __name__ == "__main__":
    raise SystemExit(main())
