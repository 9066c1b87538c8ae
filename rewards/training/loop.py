"""One training loop for every training stage (reward, dpo, grpo, rloo, ...): resume, NaN/inf guard, log history,
final save (ZeRO-3 aware) and a model card with provenance, the same for any ``transformers.Trainer``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rewards.artifacts import atomic_write_json
from rewards.reporting.model_card import build_training_card, write_training_card
from rewards.training.checkpointing import install_guards, resume_checkpoint, save_final_model
from rewards.versions import code_version, package_versions

LOG_HISTORY = "log_history.json"
MODEL_DIR = "model"

# A stage that exports the model itself (the reward stage) passes this instead of save_model=True:
# it receives the trainer and the final metrics, and returns the model folder it wrote.
Exporter = Callable[[Any, dict], Path]


@dataclass
class TrainingOutcome:
    """What a finished training run left: the model folder (None when nothing was saved) and its metrics."""

    model_dir: Path | None
    metrics: dict
    resumed_from: str | None
    log_history: list[dict] = field(default_factory=list)


def stage_provenance(*, stage: str, run: str, base_model: str, config: Mapping, inputs: Mapping[str, Mapping],
                     rubric_sha256: str | None = None, rubric_source: str = "given",
                     rubric_path: str | Path | None = None) -> dict:
    """How a model was made: stage, base model, stage config, input hashes, rubric hash, code and package versions.

    ``inputs`` maps each input stage to its manifest. The rubric hash is, in this order, ``rubric_sha256`` (e.g. from
    the reward model a policy was trained against), the inputs' manifests (the rubric the data were judged with),
    else the content hash of ``rubric_path`` (the configured rubric); ``rubric_source`` says which.
    """
    rubric, source = rubric_sha256, rubric_source if rubric_sha256 else None
    if rubric is None:
        found = [(name, m["rubric_sha256"]) for name, m in inputs.items() if m.get("rubric_sha256")]
        if found:
            rubric, source = found[0][1], f"{found[0][0]} manifest"
    if rubric is None and rubric_path is not None:
        from rewards.rubric import load_rubric

        rubric, source = load_rubric(rubric_path).content_hash(), f"principles.path ({rubric_path})"
    return {
        "stage": stage, "run": run, "base_model": base_model, "method": config.get("method", stage),
        "config": dict(config), "inputs": {name: m.get("outputs_sha256") for name, m in inputs.items()},
        "rubric_sha256": rubric, "rubric_source": source, "code": code_version(), "versions": package_versions(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def training_summary(log_history: list[dict], global_step: int) -> dict:
    """Steps, first/last logged loss and the Trainer's mean train loss, from a log history."""
    losses = [row["loss"] for row in log_history if "loss" in row]
    final = next((row["train_loss"] for row in reversed(log_history) if "train_loss" in row), float("nan"))
    return {"train_loss": round(final, 4), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "steps": global_step}


def _checkpoint_step(checkpoint: str | None) -> int | None:
    return int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else None


def train_and_save(trainer, tokenizer, stage_dir: str | Path, resume: str | bool, provenance: Mapping, *,
                   save_model: bool | Exporter = True,
                   metrics: Callable[[Any], dict] | None = None) -> TrainingOutcome:
    """Train a built trainer the way every stage does, and leave its model folder with a card.

    1. Resume per ``resume`` (auto | true | false, see ``resume_checkpoint``) from the trainer's ``output_dir``.
    2. Train with the NaN/inf guard; a non-finite loss or trained weight raises a one-line UserError, the last
       good checkpoint kept (nothing is saved after the bad step).
    3. Write ``<stage_dir>/log_history.json`` (rank 0).
    4. Metrics: the loss summary plus ``metrics(trainer)`` (called on every rank).
    5. Save: ``save_model=True`` writes ``<stage_dir>/model`` with ``save_final_model`` (ZeRO-3: gathered weights);
       an exporter callable ``(trainer, metrics) -> folder`` is called on every rank instead; False saves nothing.
    6. Card: ``model_card.json`` and ``README.md`` in the model folder (an exporter that wrote its own ``README.md``
       keeps it).
    """
    stage_dir = Path(stage_dir)
    checkpoint_dir = Path(trainer.args.output_dir)
    checkpoint = resume_checkpoint(checkpoint_dir, resume)
    # resume=false: rank 0 deletes old checkpoints; no rank may start (and save) before that is done.
    trainer.accelerator.wait_for_everyone()
    guard = install_guards(trainer)
    trainer.train(resume_from_checkpoint=checkpoint)
    guard.raise_if_tripped(checkpoint_dir)
    history = list(trainer.state.log_history)
    if trainer.is_world_process_zero():
        atomic_write_json(stage_dir / LOG_HISTORY, history)  # training curves for the report
    results = training_summary(history, trainer.state.global_step)
    results["resumed_from_step"] = _checkpoint_step(checkpoint)
    if metrics is not None:
        results.update(metrics(trainer))
    model_dir = _save(trainer, tokenizer, stage_dir, save_model, results)
    if model_dir is not None and trainer.is_world_process_zero():
        card = build_training_card(model_dir=model_dir, provenance=dict(provenance), metrics=results)
        write_training_card(model_dir, card, readme=save_model is True or not (model_dir / "README.md").exists())
    trainer.accelerator.wait_for_everyone()  # the folder is complete on every rank's view before the stage ends
    return TrainingOutcome(model_dir=model_dir, metrics=results, resumed_from=checkpoint, log_history=history)


def _save(trainer, tokenizer, stage_dir: Path, save_model: bool | Exporter, results: dict) -> Path | None:
    if callable(save_model):
        return Path(save_model(trainer, results))
    if save_model:
        return save_final_model(trainer, tokenizer, stage_dir / MODEL_DIR)
    return None
