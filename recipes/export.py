"""Export a run's policy as a checkpoint folder with its model card (README.md + model_card.json)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes._entry import project_path
from recipes.stages import upstream
from rewards.artifacts import read_manifest, sha256_file
from rewards.judges.probes import judge_checks
from rewards.reporting.model_card import build_card, export_checkpoint, weights_kind
from rewards.reporting.validity import comparison_metrics
from rewards.rubric import load_rubric
from rewards.versions import package_versions

CHECKPOINT_DIR = "checkpoint"
CARD_METRICS = ("win_rate", "win_rate_ci", "confidence", "wins", "ties", "losses", "reference", "base_score",
                "dpo_score", "base_principles", "dpo_principles", "principle_win_rates", "base_pass_rate",
                "trained_pass_rate", "release", "failed_comparisons", "expected_preference",
                "expected_preference_ci")


def _stage(run_dir: Path, stage: str) -> dict:
    return read_manifest(run_dir / stage) or {}


def data_facts(cfg: DictConfig, run_dir: Path) -> dict:
    """Hashes and counts of every artifact the checkpoint was made from."""
    facts: dict = {"prompts_source": str(cfg.data.prompts)}
    for stage in upstream("evaluate"):
        manifest = _stage(run_dir, stage)
        if manifest:
            facts[f"{stage}_sha256"] = manifest["outputs_sha256"]
            facts.update({f"{stage}.{k}": v for k, v in manifest.get("counts", {}).items()})
    prompts = run_dir / "generate" / "prompts.jsonl"
    if prompts.exists():
        facts["prompts_jsonl_sha256"] = sha256_file(prompts)
    return facts


def run_card(cfg: DictConfig, run_dir: Path, metrics: dict) -> dict:
    rubric_path = project_path(cfg.principles.path)
    rubric = load_rubric(rubric_path)
    reward = _stage(run_dir, "reward").get("metrics", {})
    dpo = _stage(run_dir, "dpo").get("metrics", {})
    safety = metrics["safety"]
    checks = judge_checks(run_dir)  # the probes stage runs before evaluate in a pipeline; absent figures are None
    return build_card(
        name=f"counsel-align-{cfg.run}",
        base_model=cfg.model.name_or_path,
        weights=weights_kind(run_dir / "dpo" / "model"),
        rubric={"name": rubric.name, "version": rubric.version, "path": str(cfg.principles.path),
                "sha256": rubric.content_hash(), "weights": rubric.weights(dict(cfg.principles.weights)),
                "text": rubric_path.read_text(encoding="utf-8")},
        data={**data_facts(cfg, run_dir), "redflags_sha256": safety["redflags_sha256"],
              "redflag_scenarios": safety["n_scenarios"]},
        judge=OmegaConf.to_container(cfg.judge, resolve=True),
        training={"dpo": OmegaConf.to_container(cfg.dpo, resolve=True),
                  "reward": OmegaConf.to_container(cfg.reward, resolve=True),
                  "pairs": OmegaConf.to_container(cfg.pairs, resolve=True), "seed": cfg.seed,
                  "dpo_result": dpo, "reward_result": {k: v for k, v in reward.items() if k != "base_model"}},
        metrics={**{k: metrics[k] for k in CARD_METRICS if k in metrics},
                 **{k: checks[k] for k in ("probe_detection", "probe_weakest_principle")},
                 **comparison_metrics(metrics.get("comparisons", {}))},  # against base and this run's SFT model
        safety=safety,
        versions=package_versions(),
        judge_checks=checks,
        calibration=_stage(run_dir, "calibrate").get("metrics"),
    )


def export_run_checkpoint(cfg: DictConfig, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    """``out_dir/checkpoint``: the DPO policy, its reward model and the card."""
    card = run_card(cfg, run_dir, metrics)
    return export_checkpoint(out_dir / CHECKPOINT_DIR, run_dir / "dpo" / "model", card, run_dir / "reward" / "model")
