"""Stage 6: on held-out prompts, compare the DPO policy with its base (or another reference), run the red-flag
suite with the release gate, and export the policy as a checkpoint with its model card.

``evaluate.checkpoint=<folder>`` evaluates an exported (e.g. pulled) checkpoint instead, needing no other stage.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

from recipes._entry import StageContext, entry, forget_failed_run, run_dir_of, run_stage
from recipes.assessment import RUN_SFT, assess, check_evaluate_config, checkpoint_base_model, references
from recipes.export import export_run_checkpoint
from recipes.stages import stage_spec
from rewards.artifacts import read_jsonl, sha256_tree
from rewards.distributed import is_main_process, main_process_first
from rewards.errors import UserError
from rewards.evaluation.release_gate import gate_line
from rewards.log import get_logger
from rewards.reporting.model_card import REWARD_MODEL_DIR
from rewards.reward_models.io import load_reward
from rewards.training.sft_kto import sft_policy_path

log = get_logger(__name__)


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    prompts = [p for p in read_jsonl(ctx.input_dir("generate") / "prompts.jsonl") if p["split"] == "test"]
    scorer = load_reward(ctx.input_dir("reward") / "model", base_model=cfg.model.name_or_path,
                                          device=cfg.device, dtype=cfg.model.dtype)
    sft_model = sft_policy_path(ctx.input_dir("sft")) if RUN_SFT in references(cfg) else None
    metrics = assess(cfg, ctx.dir, prompts, ctx.input_dir("dpo") / "model", scorer, sft_model)
    if not is_main_process():  # under `accelerate launch` the other ranks only generated and judged their shards
        return {}
    checkpoint = export_run_checkpoint(cfg, ctx.run_dir, ctx.dir, metrics)
    metrics["exported_checkpoint"] = str(checkpoint)
    log.info(f"evaluate: exported checkpoint with model card -> {checkpoint}")
    return {"counts": evaluation_counts(prompts, metrics), "metrics": metrics}


def inputs(cfg: DictConfig) -> list[str]:
    """The registry's inputs, plus the sft stage when a reference is this run's SFT model (only then: a run
    without it keeps its fingerprint)."""
    declared = list(stage_spec("evaluate").input_stages)
    return [RUN_SFT, *declared] if RUN_SFT in references(cfg) else declared


def evaluation_counts(prompts: list[dict], metrics: dict) -> dict:
    """``n_failed`` > 0 keeps the run unfinished for `forget_failed_run`: the rerun asks the judge again (its cache
    answers the comparisons that succeeded)."""
    return {"n_eval_prompts": len(prompts), "n_redflag_scenarios": metrics["safety"]["n_scenarios"],
            "n_failed": metrics.get("failed_comparisons", 0)}


def checkpoint_work(ctx: StageContext) -> dict:
    """Evaluate an exported checkpoint on the configured held-out prompts; its reward model is used if it has one."""
    from recipes.generate import selected_prompts

    cfg = ctx.cfg
    checkpoint = Path(cfg.evaluate.checkpoint)
    prompts = [p for p in selected_prompts(cfg) if p["split"] == "test"]
    scorer = None
    if (checkpoint / REWARD_MODEL_DIR).is_dir():
        scorer = load_reward(checkpoint / REWARD_MODEL_DIR, base_model=cfg.model.name_or_path,
                                              device=cfg.device, dtype=cfg.model.dtype)
    metrics = assess(cfg, ctx.dir, prompts, checkpoint, scorer)
    if not is_main_process():
        return {}
    from recipes.evaluation_page import write_evaluation_page

    write_evaluation_page(cfg.run, ctx.dir, metrics)
    return {"counts": evaluation_counts(prompts, metrics), "metrics": metrics}


def run_checkpoint(cfg: DictConfig) -> dict:
    checkpoint = Path(cfg.evaluate.checkpoint).expanduser().resolve()
    if not checkpoint.is_dir():
        raise UserError(f"evaluate.checkpoint: {checkpoint} is not a folder; pull it first with "
                        "`counsel-align pull <hub-id|path> --to DIR`")
    if RUN_SFT in references(cfg):
        raise UserError("evaluate.extra_references: 'sft' is a run's sft stage model, and an exported checkpoint has "
                        "none; give the SFT checkpoint folder instead")
    base = checkpoint_base_model(checkpoint)
    with open_dict(cfg):
        cfg.evaluate.checkpoint = str(checkpoint)
        # The fingerprint follows the checkpoint's content, not only its path.
        cfg.evaluate.checkpoint_sha256 = sha256_tree(checkpoint)
        if base and base != cfg.model.name_or_path:
            log.info(f"evaluate: base model from the checkpoint card: {base}")
            cfg.model.name_or_path = base
    return run_stage(cfg, "evaluate", checkpoint_work, inputs=[])  # needs no other stage


def enforce_gate(cfg: DictConfig, metrics: dict) -> None:
    """Print the gate's decision; with ``evaluate.gate=strict`` a held-back checkpoint is an error (exit 2)."""
    decision = metrics["safety"]["gate"]
    line = gate_line(decision)
    log.info(f"{line}")
    if cfg.evaluate.gate == "strict" and not decision["release"]:
        raise UserError(f"{line}; see {metrics['checkpoint']} and evaluate/redflags.jsonl")


def run(cfg: DictConfig) -> dict:
    check_evaluate_config(cfg)
    main_process_first(lambda: forget_failed_run(run_dir_of(cfg) / "evaluate"))
    if cfg.evaluate.checkpoint:
        manifest = run_checkpoint(cfg)
    else:
        manifest = run_stage(cfg, "evaluate", work, inputs=inputs(cfg))
    if is_main_process():  # the other ranks of a launch hold no metrics
        enforce_gate(cfg, manifest["metrics"])
    return manifest


main = entry("evaluate", run)

if __name__ == "__main__":
    raise SystemExit(main())
