"""Reward-model evaluation: pairwise accuracy overall, per principle, per topic and by length, beside a
length-only and a base-model log-likelihood baseline; CounselChat upvote pairs; histogram and calibration plots.

Every pair that cannot be scored as given is counted (dropped empty replies, truncated over-length conversations).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rewards.errors import UserError
from rewards.reward_models.data import (
    PAIR_COLUMNS,
    PairReport,
    encode_conversation,
    nonempty_replies,
    require_columns,
    response_text,
)
from rewards.reward_models.scorer import RewardScorer, pairwise_accuracy


def clean_pairs(rows: Sequence[dict], tokenizer, max_length: int, source: str) -> tuple[list[dict], PairReport]:
    """Pairs that can be scored; empty replies are dropped and over-length ones counted as truncated."""
    rows = list(rows)
    if rows:
        require_columns(rows[0].keys(), PAIR_COLUMNS, source)
    report, kept = PairReport(total=len(rows)), []
    for row in rows:
        if (replies := nonempty_replies(row, report)) is None:
            continue
        longest = max(len(encode_conversation(tokenizer, row["prompt"], text)) for text in replies)
        report.truncated += longest > max_length
        kept.append(row)
    report.kept = len(kept)
    return kept, report


def score_pairs(score: Callable[[list, list[str]], list[float]], pairs: Sequence[dict]) -> tuple[list, list]:
    prompts = [p["prompt"] for p in pairs]
    return (score(prompts, [response_text(p["chosen"]) for p in pairs]),
            score(prompts, [response_text(p["rejected"]) for p in pairs]))


def _accuracy_by(groups: dict[str, list[int]], chosen: Sequence[float], rejected: Sequence[float]) -> dict:
    return {name: {"accuracy": round(pairwise_accuracy([chosen[i] for i in idx], [rejected[i] for i in idx]), 4),
                   "n": len(idx)} for name, idx in sorted(groups.items())}


def length_bucket(pair: dict) -> str:
    """Where length could explain the preference: chosen reply longer, shorter, or within 10%."""
    c, r = len(response_text(pair["chosen"])), len(response_text(pair["rejected"]))
    if abs(c - r) <= 0.1 * max(c, r, 1):
        return "similar length (±10%)"
    return "chosen longer" if c > r else "chosen shorter"


def breakdown(pairs: Sequence[dict], chosen: Sequence[float], rejected: Sequence[float],
              principle_ids: Sequence[str]) -> dict:
    """Accuracy overall, per topic, per length bucket, and per principle on the pairs where it decided."""
    topics, buckets, principles = defaultdict(list), defaultdict(list), {}
    for i, pair in enumerate(pairs):
        topics[str(pair.get("topic", "unknown"))].append(i)
        buckets[length_bucket(pair)].append(i)
    missing = [pid for pid in principle_ids if pairs and f"chosen_{pid}" not in pairs[0]]
    for pid in principle_ids:
        if pid in missing:
            continue
        better, worse = [], []
        for i, pair in enumerate(pairs):
            gap = float(pair[f"chosen_{pid}"]) - float(pair[f"rejected_{pid}"])
            if gap:
                better.append(chosen[i] if gap > 0 else rejected[i])
                worse.append(rejected[i] if gap > 0 else chosen[i])
        principles[pid] = {"accuracy": round(pairwise_accuracy(better, worse), 4), "n": len(better)}
    return {"accuracy": round(pairwise_accuracy(chosen, rejected), 4), "n": len(pairs),
            "by_topic": _accuracy_by(topics, chosen, rejected), "by_length": _accuracy_by(buckets, chosen, rejected),
            "by_principle": principles, "principles_missing_columns": missing}


def length_scores(prompts: Sequence, responses: Sequence[str]) -> list[float]:
    """The length-only baseline as a 'reward': longer is better."""
    return [float(len(r)) for r in responses]


class LogLikelihoodBaseline:
    """Mean per-token log-probability of the reply under the base causal LM, as a reward baseline."""

    def __init__(self, model, tokenizer, max_length: int = 1024, batch_size: int = 8) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    def _encode(self, prompt, response: str) -> tuple[list[int], int]:
        from rewards.reward_models.data import prompt_messages

        head = self.tokenizer.apply_chat_template(prompt_messages(prompt), tokenize=True, return_dict=True,
                                                  add_generation_prompt=True)["input_ids"]
        full = encode_conversation(self.tokenizer, prompt, response)
        start = max(len(full) - self.max_length, 0)
        return full[start:], max(len(head) - start, 1)

    @torch.inference_mode()
    def __call__(self, prompts: Sequence, responses: Sequence[str]) -> list[float]:
        device = next(self.model.parameters()).device
        encoded = [self._encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        scores: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start:start + self.batch_size]
            width = max(len(ids) for ids, _ in batch)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch], device=device)
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
            logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
            token_lp = logprobs.gather(-1, ids[:, 1:, None])[..., 0]
            for row, (tokens, reply_start) in enumerate(batch):
                reply = token_lp[row, reply_start - 1:len(tokens) - 1]
                scores.append(float(reply.mean()) if reply.numel() else float("-inf"))
        return scores


def calibration(chosen: Sequence[float], rejected: Sequence[float], bins: int = 5) -> dict:
    """Bradley–Terry confidence sigmoid(|Δ|) against accuracy, in equal-width bins over [0.5, 1]; plus ECE."""
    conf = [1 / (1 + math.exp(-abs(c - r))) for c, r in zip(chosen, rejected, strict=True)]
    correct = [float(c > r) + 0.5 * (c == r) for c, r in zip(chosen, rejected, strict=True)]
    table = []
    for b in range(bins):
        low, high = 0.5 + 0.5 * b / bins, 0.5 + 0.5 * (b + 1) / bins
        idx = [i for i, p in enumerate(conf) if low <= p < high or (b == bins - 1 and p == high)]
        if idx:
            table.append({"low": round(low, 3), "high": round(high, 3), "n": len(idx),
                          "confidence": round(statistics.mean(conf[i] for i in idx), 4),
                          "accuracy": round(statistics.mean(correct[i] for i in idx), 4)})
    ece = sum(row["n"] * abs(row["confidence"] - row["accuracy"]) for row in table) / max(len(conf), 1)
    return {"bins": table, "ece": round(ece, 4)}


def plot_histogram(chosen: Sequence[float], rejected: Sequence[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist([list(chosen), list(rejected)], bins=20, label=["chosen", "rejected"], alpha=0.8)
    ax.set_xlabel("reward")
    ax.set_ylabel("replies")
    ax.set_title("Reward of chosen vs rejected replies (held-out pairs)")
    ax.legend()
    from rewards.reporting.report import save_figure

    save_figure(fig, path)


def plot_calibration(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="perfect")
    rows = table["bins"]
    ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", label="reward model")
    for r in rows:
        ax.annotate(str(r["n"]), (r["confidence"], r["accuracy"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlim(0.48, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Bradley–Terry confidence sigmoid(|Δreward|)")
    ax.set_ylabel("pairwise accuracy")
    ax.set_title(f"Calibration (ECE {table['ece']})")
    ax.legend()
    from rewards.reporting.report import save_figure

    save_figure(fig, path)


def load_counselchat_pairs(source: str, split: str = "test", max_pairs: int | None = None,
                           seed: int = 0) -> tuple[list[dict], dict]:
    """CounselChat upvote pairs (better answer = more upvotes, within one question) as TRL conversational rows.

    Cleaning (questions keyed by link, duplicate answers removed, no val/test leak) is done by
    ``rewards.human_prefs``; ``source`` is the dataset folder, its CSV, or the hub id.
    """
    from rewards.human_prefs import load_counselchat, sample_pairs

    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "counsel_chat.csv"
    pairs = load_counselchat(str(path) if path.exists() else source)
    available = [p for p in pairs if split == "all" or p["split"] == split]
    if not available:
        raise UserError(f"reward_eval.counselchat_split: no CounselChat pairs in split {split!r}; "
                        "use train, val, test or all")
    chosen = sample_pairs(available, max_pairs, seed=seed)
    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}], "question": p["prompt_id"], "topic": p["topic"],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in chosen]
    counts = {"split": split, "pairs_available": len(available), "pairs": len(rows),
              "questions": len({r["question"] for r in rows})}
    return rows, counts


def question_bootstrap_ci(pairs: Sequence[dict], chosen: Sequence[float], rejected: Sequence[float],
                          resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of pairwise accuracy, resampling whole questions (pairs within a question are correlated)."""
    by_question = defaultdict(list)
    for i, p in enumerate(pairs):
        by_question[p["question"]].append(1.0 if chosen[i] > rejected[i] else 0.5 if chosen[i] == rejected[i] else 0)
    groups = list(by_question.values())
    if not groups:
        return float("nan"), float("nan")
    rng, stats = random.Random(seed), []
    for _ in range(resamples):
        sample = [x for _ in groups for x in rng.choice(groups)]
        stats.append(sum(sample) / len(sample))
    stats.sort()
    return round(stats[int(0.025 * resamples)], 4), round(stats[int(0.975 * resamples) - 1], 4)


def evaluate_counselchat(scorer: RewardScorer, source: str, split: str, max_pairs: int | None, seed: int = 0) -> dict:
    pairs, counts = load_counselchat_pairs(source, split, max_pairs, seed)
    kept, report = clean_pairs(pairs, scorer.tokenizer, scorer.max_length, f"CounselChat {source}")
    chosen, rejected = score_pairs(scorer.score, kept)
    length_c, length_r = score_pairs(length_scores, kept)
    low, high = question_bootstrap_ci(kept, chosen, rejected, seed=seed)
    return {"accuracy": round(pairwise_accuracy(chosen, rejected), 4), "ci95_by_question": [low, high],
            "length_baseline": round(pairwise_accuracy(length_c, length_r), 4), "source": source, **counts,
            "data": report.as_dict()}

