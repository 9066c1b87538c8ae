"""Evaluate a trained policy against its base and a reference: judged win rate with a bootstrap interval,
per-principle scores, reward-model scores, and the red-flag suite with the release gate.

Shared by the evaluate stage (the run's own DPO model) and by evaluating an exported checkpoint by its path.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm.auto import tqdm

from recipes._entry import project_path
from recipes.calibrate import check_harm_judge
from recipes.judge import USAGE_FILE, build_judge, pricing
from rewards.artifacts import atomic_write_json, atomic_write_jsonl, sha256_tree
from rewards.distributed import all_gather, is_main_process, join_process_group, map_batches_sharded, shard
from rewards.errors import UserError
from rewards.evaluation.compare import PairwiseOutcome, judged_comparisons, principle_means
from rewards.evaluation.release_gate import (
    GATE_MODES,
    MEANS_SEEKING,
    GateFloors,
    release_decision,
    result_rows,
    score_suite,
    select_scenarios,
)
from rewards.evaluation.safety import CATEGORIES, judge_harm_scores, load_redflags
from rewards.evaluation.winrate import (
    expected_preference,
    expected_preference_with_ci,
    length_win_rate_with_ci,
    load_reference_responses,
    match_references,
    per_principle_win_rates,
    win_rate_with_ci,
)
from rewards.generation.responders import batched, chat_messages, generate_texts, render_prompts
from rewards.judges import JudgeItem
from rewards.judges.batching import FailureTally, add_usage, judge_usage
from rewards.log import get_logger
from rewards.models import load_causal_lm, load_tokenizer
from rewards.reporting.model_card import CARD_JSON, read_card, weights_kind
from rewards.rubric import load_rubric
from rewards.threads import apply_threads

log = get_logger(__name__)


class PolicyPair:
    """Greedy replies of a trained policy and of its base; one model in memory when the policy is a LoRA adapter."""

    def __init__(self, cfg: DictConfig, checkpoint: Path) -> None:
        if not Path(checkpoint).is_dir():
            raise UserError(f"{checkpoint}: checkpoint folder not found")
        self.cfg = cfg
        base_name = cfg.model.name_or_path
        tokenizer_source = str(checkpoint) if (Path(checkpoint) / "tokenizer_config.json").exists() else base_name
        self.tokenizer = load_tokenizer(tokenizer_source, cfg.model.trust_remote_code)
        base = load_causal_lm(base_name, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
        if weights_kind(checkpoint) == "lora_adapter":
            from peft import PeftModel

            self.model, self.base = PeftModel.from_pretrained(base, str(checkpoint)).eval(), None
        else:
            self.model = load_causal_lm(str(checkpoint), cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
            self.base = base

    def _generate(self, model, texts: list[str], name: str) -> list[str]:
        """Greedy replies; under ``accelerate launch`` each rank generates a shard of the batches, and every rank
        gets all replies."""
        batch_size = self.cfg.evaluate.batch_size
        with tqdm(total=sum(len(b) for b in shard(list(batched(texts, batch_size)))), desc=f"evaluate[{name}]",
                  unit="reply") as bar:
            def replies(batch: list[str]) -> list[str]:
                rendered = render_prompts(self.tokenizer, [chat_messages(t) for t in batch])
                got = generate_texts(model, self.tokenizer, rendered, self.cfg.evaluate.max_new_tokens)
                bar.update(len(batch))
                return [o[0]["text"] for o in got]

            return map_batches_sharded(replies, texts, batch_size)

    @property
    def _adapter_attached(self) -> bool:
        """True while the policy is a LoRA adapter over the base, not yet merged into it."""
        from peft import PeftModel

        return isinstance(self.model, PeftModel)

    def base_replies(self, texts: list[str]) -> list[str]:
        if self.base is not None:
            return self._generate(self.base, texts, "base")
        if not self._adapter_attached:
            raise RuntimeError("base replies are gone once the adapter is merged; ask for them first")
        with self.model.disable_adapter():
            return self._generate(self.model, texts, "base")

    def trained_replies(self, texts: list[str]) -> list[str]:
        """The trained policy's replies; a LoRA adapter is merged first (same function, a faster forward)."""
        if self._adapter_attached:
            self.model = self.model.merge_and_unload()
        return self._generate(self.model, texts, "trained")


RUN_SFT = "sft"  # a reference naming this run's sft stage model (needs the sft stage)


def references(cfg: DictConfig) -> list[str]:
    """Every reference the trained policy is compared with: ``evaluate.reference`` first, then each of
    ``evaluate.extra_references`` not already listed."""
    names = [str(cfg.evaluate.reference)]
    for name in cfg.evaluate.extra_references:
        if str(name) not in names:
            names.append(str(name))
    return names


def reference_replies(cfg: DictConfig, reference: str, prompts: list[dict], base_replies: list[str],
                      sft_model: Path | None = None) -> tuple[str, list[str]]:
    """The reference's name and replies: the base model's, this run's SFT model's, another checkpoint's, or those
    in a JSONL file."""
    if reference == "base":
        return "base", base_replies
    if reference == RUN_SFT:
        if sft_model is None:
            raise UserError("evaluate: the reference 'sft' is this run's sft stage model, and there is none here "
                            "(evaluate.checkpoint); give the SFT checkpoint folder instead")
        return RUN_SFT, PolicyPair(cfg, sft_model).trained_replies([p["text"] for p in prompts])
    path = project_path(reference)
    if path.is_file():
        return str(path), match_references(load_reference_responses(path), prompts, str(path))
    if path.is_dir():
        return str(path), PolicyPair(cfg, path).trained_replies([p["text"] for p in prompts])
    raise UserError(f"evaluate.reference: {reference!r} is neither 'base', 'sft', a checkpoint folder nor a JSONL "
                    "file")


def check_references(cfg: DictConfig) -> None:
    """Every extra reference is a list item naming base, sft, a checkpoint folder or a JSONL file."""
    extra = cfg.evaluate.extra_references
    if not isinstance(extra, list | ListConfig):
        raise UserError(f"evaluate.extra_references: {extra!r} must be a list, e.g. [base, sft]")
    for name in extra:
        if name in ("base", RUN_SFT):
            continue
        if not isinstance(name, str) or not project_path(name).exists():
            raise UserError(f"evaluate.extra_references: {name!r} is neither base, sft, a checkpoint folder nor a "
                            "JSONL file; fix the path or drop it")


def check_evaluate_config(cfg: DictConfig) -> None:
    if cfg.evaluate.gate not in GATE_MODES:
        raise UserError(f"evaluate.gate: {cfg.evaluate.gate!r} is not one of {list(GATE_MODES)}")
    limit = cfg.evaluate.redflag_limit
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"evaluate.redflag_limit: {limit!r} must be a positive integer or null (all scenarios)")
    for key in ("gate_min_pass_rate", "gate_min_crisis_pass_rate", "max_failure_fraction"):
        value = cfg.evaluate[key]
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise UserError(f"evaluate.{key}: {value!r} must be a number from 0 to 1")
    known = (*CATEGORIES, MEANS_SEEKING)
    for category in cfg.evaluate.gate_crisis_categories:
        if category not in known:
            raise UserError(f"evaluate.gate_crisis_categories: unknown category {category!r}; known: {list(known)}")
    check_harm_judge(cfg, "evaluate.harm_threshold", cfg.evaluate.harm_threshold)
    check_references(cfg)


def gate_floors(cfg: DictConfig) -> GateFloors:
    ev = cfg.evaluate
    return GateFloors(min_pass_rate=float(ev.gate_min_pass_rate),
                      min_crisis_pass_rate=float(ev.gate_min_crisis_pass_rate),
                      crisis_categories=tuple(ev.gate_crisis_categories))


def check_comparisons(outcomes: list[PairwiseOutcome], prompts: list[dict], max_fraction: float) -> FailureTally:
    """Failed judge comparisons, listed; more than ``max_fraction`` of them stops the stage (they are not ties)."""
    failures = FailureTally()
    for prompt, outcome in zip(prompts, outcomes, strict=True):
        if outcome.failed:
            failures.add({"prompt_id": prompt["id"]}, outcome.error or "unknown failure")
    count = len(failures.items)
    if count and count > max_fraction * len(outcomes):
        raise UserError(f"evaluate: the judge failed on {count} of {len(outcomes)} win-rate comparisons (first "
                        f"reason: {failures.items[0]['error']}), more than evaluate.max_failure_fraction="
                        f"{max_fraction}; rerun the same command (answers already given come from the judge cache)")
    if count:
        log.info(f"evaluate: warning: the judge failed on {count} of {len(outcomes)} comparisons "
                 f"(first reason: {failures.items[0]['error']}); the win rate leaves them out")
    return failures


class ShardedJudge:
    """Scores and comparisons of a judge, each rank asking for a shard of chunks of ``chunk`` items; every rank
    gets all answers in order. One process asks in the same chunks, so a batched local judge pads alike."""

    def __init__(self, judge, chunk: int) -> None:
        self.judge, self.chunk = judge, chunk

    def score(self, items: list[JudgeItem]) -> list:
        return map_batches_sharded(self.judge.score, items, self.chunk)

    def comparisons(self, triples: list[tuple[str, str, str]]) -> list[PairwiseOutcome]:
        return map_batches_sharded(lambda part: judged_comparisons(self.judge, part), triples, self.chunk)

    def usage(self) -> dict[str, int]:
        """Token and request counts summed over the ranks."""
        total: dict[str, int] = {}
        for usage in all_gather(judge_usage(self.judge)):
            total = add_usage(total, usage)
        return total


def compare_with_reference(judge: ShardedJudge, cfg: DictConfig, prompts: list[dict], trained: list[str],
                           reference: list[str]) -> tuple[list[PairwiseOutcome], FailureTally, dict]:
    """The trained replies judged against one reference's, both orders per prompt: the outcomes, the failed
    comparisons, and the summary (strict win rate, expected preference, the length-only baseline, intervals)."""
    outcomes = judge.comparisons([(p["text"], mine, theirs)
                                  for p, mine, theirs in zip(prompts, trained, reference, strict=True)])
    failed = check_comparisons(outcomes, prompts, cfg.evaluate.max_failure_fraction)
    return outcomes, failed, comparison_summary(cfg, outcomes, trained, reference)


def comparison_summary(cfg: DictConfig, outcomes: list[PairwiseOutcome], trained: list[str],
                       reference: list[str]) -> dict:
    """Figures of one comparison over the prompts the judge answered, each with its prompt-level interval. The
    length-only baseline (trained reply longer: win, ties ½) says whether "preferred" may only mean "longer"."""
    ev = cfg.evaluate
    boot = {"n_resamples": ev.bootstrap_resamples, "confidence": ev.confidence, "seed": cfg.seed}
    answered = [i for i, outcome in enumerate(outcomes) if not outcome.failed]
    strict = win_rate_with_ci([outcomes[i].verdict(ev.tie_band) for i in answered], **boot)
    preference = expected_preference_with_ci([(outcomes[i].p_first_as_a, outcomes[i].p_first_as_b)
                                              for i in answered], **boot)
    length = length_win_rate_with_ci([trained[i] for i in answered], [reference[i] for i in answered], **boot)
    return {
        **{k: strict[k] for k in ("win_rate", "wins", "ties", "losses", "n")},
        "win_rate_ci": [strict["ci_low"], strict["ci_high"]],
        "expected_preference": preference["expected_preference"],
        "expected_preference_ci": [preference["ci_low"], preference["ci_high"]],
        "length_baseline": length["win_rate"],
        "length_baseline_ci": [length["ci_low"], length["ci_high"]],
        "failed_comparisons": len(outcomes) - len(answered),
        "confidence": ev.confidence,
    }


def judge_chunk(cfg: DictConfig) -> int:
    """Items per judge call: a local judge's batch (its float results depend on the batch it pads); a remote judge
    gets large chunks so that its concurrent requests stay many."""
    if cfg.judge.backend == "local":
        return cfg.judge.batch_size
    return 256


def assess(cfg: DictConfig, out_dir: Path, prompts: list[dict], checkpoint: Path, scorer=None,
           sft_model: Path | None = None) -> dict:
    """Write eval.jsonl, redflags.jsonl and metrics.json into ``out_dir``; returns the metrics.

    ``sft_model``: this run's SFT model, the reference named ``sft`` (``evaluate.reference`` or
    ``evaluate.extra_references``).
    """
    check_evaluate_config(cfg)
    join_process_group()  # under `accelerate launch` generation and judging are sharded; rank 0 writes the results
    ev = cfg.evaluate
    redflag_dir = project_path(ev.redflags)
    scenarios = select_scenarios(load_redflags(redflag_dir), ev.redflag_limit)
    apply_threads(cfg.threads)
    policy = PolicyPair(cfg, checkpoint)
    texts, messages = [p["text"] for p in prompts], [s.message for s in scenarios]
    base_all, trained_all = policy.base_replies(texts + messages), policy.trained_replies(texts + messages)
    del policy
    n = len(texts)
    replies = {"base": base_all[:n], "dpo": trained_all[:n]}
    flagged = {"base": base_all[n:], "trained": trained_all[n:]}
    compared_with = dict(reference_replies(cfg, name, prompts, replies["base"], sft_model) for name in references(cfg))
    reference_name = next(iter(compared_with))  # evaluate.reference: the main comparison, the gate's and the card's
    reference = compared_with[reference_name]
    rewards = ({name: scorer.score([[{"role": "user", "content": t}] for t in texts], got)
                for name, got in replies.items()} if scorer is not None else None)

    rubric = load_rubric(project_path(cfg.principles.path))
    judge = ShardedJudge(build_judge(cfg, rubric), judge_chunk(cfg))
    compared = {name: compare_with_reference(judge, cfg, prompts, replies["dpo"], got)
                for name, got in compared_with.items()}
    outcomes, failed, main = compared[reference_name]
    principles = {name: judge.score([JudgeItem(p["text"], reply) for p, reply in zip(prompts, got, strict=True)])
                  for name, got in (("base", replies["base"]), ("dpo", replies["dpo"]))}
    principles["reference"] = principles["base"] if reference_name == "base" else judge.score(
        [JudgeItem(p["text"], reply) for p, reply in zip(prompts, reference, strict=True)])
    harms = {name: judge_harm_scores(judge, scenarios, got, rubric) for name, got in flagged.items()}
    usage = judge.usage()
    if not is_main_process():
        return {}
    verdicts = [outcome.verdict(ev.tie_band) for outcome in outcomes]
    rows = []
    for index, (prompt, outcome) in enumerate(zip(prompts, outcomes, strict=True)):
        rows.append({
            "prompt_id": prompt["id"], "topic": prompt.get("topic"), "prompt": prompt["text"],
            "base": replies["base"][index], "dpo": replies["dpo"][index], "reference": reference[index],
            "base_reward": rewards["base"][index] if rewards else None,
            "dpo_reward": rewards["dpo"][index] if rewards else None,
            "base_principles": principles["base"][index],
            "dpo_principles": principles["dpo"][index],
            "reference_principles": principles["reference"][index],
            "p_dpo_better_as_a": None if outcome.failed else round(outcome.p_first_as_a, 4),
            "p_dpo_better_as_b": None if outcome.failed else round(outcome.p_first_as_b, 4),
            "p_dpo_better": None if outcome.failed else round(expected_preference(outcome.p_first_as_a,
                                                                                 outcome.p_first_as_b), 4),
            "verdict": verdicts[index],
            **({"judge_error": outcome.error} if outcome.failed else {}),
            **extra_reference_cells(compared_with, compared, reference_name, index),
        })
    atomic_write_jsonl(out_dir / "eval.jsonl", rows)

    outcomes = {name: score_suite(scenarios, flagged[name], harms[name], ev.harm_threshold) for name in flagged}
    atomic_write_jsonl(out_dir / "redflags.jsonl",
                       result_rows(scenarios, flagged, {n: o[0] for n, o in outcomes.items()}, harms))
    safety = {name: outcome[1] for name, outcome in outcomes.items()}
    decision = release_decision(safety["base"]["pass_rate"], safety["trained"]["pass_rate"], ev.gate_tolerance,
                                gate_floors(cfg), safety["trained"])

    boot = {"n_resamples": ev.bootstrap_resamples, "confidence": ev.confidence, "seed": cfg.seed}
    metrics = {
        "base_score": round(statistics.mean(rewards["base"]), 4) if rewards and rows else None,
        "dpo_score": round(statistics.mean(rewards["dpo"]), 4) if rewards and rows else None,
        **{k: main[k] for k in ("win_rate", "wins", "ties", "losses", "win_rate_ci", "expected_preference",
                                "expected_preference_ci", "confidence")},
        "failed_comparisons": len(failed.items),
        "failed_comparison_list": failed.items,
        "reference": reference_name,
        # every reference, the main one first: strict win rate, expected preference and the length-only baseline
        "comparisons": {name: summary for name, (_, _, summary) in compared.items()},
        "principle_win_rates": per_principle_win_rates([r["dpo_principles"] for r in rows],
                                                       [r["reference_principles"] for r in rows],
                                                       ev.principle_margin, **boot),
        "base_principles": principle_means([r["base_principles"] for r in rows]),
        "dpo_principles": principle_means([r["dpo_principles"] for r in rows]),
        "identical_replies": sum(r["base"] == r["dpo"] for r in rows),
        "judge": OmegaConf.to_container(cfg.judge, resolve=True),
        "checkpoint": str(checkpoint),
        "safety": {"base": safety["base"], "trained": safety["trained"], "harm_threshold": ev.harm_threshold,
                   "n_scenarios": len(scenarios), "redflags": str(ev.redflags),
                   "redflags_sha256": sha256_tree(redflag_dir), "gate": decision},
        "base_pass_rate": decision["base_pass_rate"],
        "trained_pass_rate": decision["trained_pass_rate"],
        "release": decision["release"],
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    # Token counts vary between runs (cache hits): kept out of the hashed outputs, in the manifest's metrics only.
    atomic_write_json(out_dir / USAGE_FILE, usage)
    return metrics | {"judge_usage": usage, "estimated_cost": pricing(cfg).cost(usage)}


def extra_reference_cells(compared_with: dict[str, list[str]], compared: dict[str, tuple], main: str,
                          index: int) -> dict:
    """An eval.jsonl row's replies of the other references and the judge's preference for the trained reply."""
    cells = {}
    for name, replies in compared_with.items():
        if name == main:
            continue
        outcome = compared[name][0][index]
        cells[name] = {"reply": replies[index], "p_dpo_better": None if outcome.failed else round(
            expected_preference(outcome.p_first_as_a, outcome.p_first_as_b), 4)}
    return {"extra_references": cells} if cells else {}


def checkpoint_base_model(checkpoint: Path) -> str | None:
    """The base model named by a checkpoint's card, or by its adapter config."""
    if (checkpoint / CARD_JSON).exists():
        return read_card(checkpoint, allow_training=True).get("base_model")
    adapter = checkpoint / "adapter_config.json"
    if adapter.exists():
        import json

        return json.loads(adapter.read_text()).get("base_model_name_or_path")
    return None
