"""Shared body of the online RLHF stages (`counsel-align grpo`, `counsel-align rloo`)."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from recipes.stages import stage_spec
from rewards.artifacts import atomic_write_json, read_jsonl, read_manifest
from rewards.distributed import is_main_process
from rewards.errors import UserError
from rewards.log import get_logger
from rewards.models import load_tokenizer
from rewards.reward_models.io import load_reward, read_reward_config
from rewards.training.loop import stage_provenance, train_and_save
from rewards.training.online import build_online_trainer, prompt_dataset, reward_trajectory
from rewards.training.tracking import configure_wandb

log = get_logger(__name__)


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    section = cfg[ctx.name]  # configs/grpo/ or configs/rloo/, typed by recipes/config_schema.py
    train_cfg = OmegaConf.to_container(section, resolve=True)
    if section.method != ctx.name:
        raise UserError(f"{ctx.name}.method: `counsel-align {ctx.name}` trains {ctx.name} (got {section.method!r}); "
                        f"drop the {ctx.name}.method override")
    prompts = [p for p in read_jsonl(ctx.input_dir("generate") / "prompts.jsonl") if p.get("split") == "train"]
    reward = load_reward(ctx.input_dir("reward") / "model", trust_remote_code=cfg.model.trust_remote_code,
                         device=cfg.device, merge_lora=True, batch_size=section.reward_batch_size)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-{ctx.name}")
    trainer = build_online_trainer(ctx.name, cfg.model.name_or_path, tokenizer, prompt_dataset(prompts), reward,
                                   train_cfg, ctx.dir / "checkpoints", report_to, cfg.seed)
    # the policy learns the rubric through the reward model: its rubric is the one that model was trained on
    reward_rubric = read_reward_config(ctx.input_dir("reward") / "model").get("provenance", {}).get("rubric_sha256")
    inputs = {stage: read_manifest(ctx.input_dir(stage)) or {} for stage in stage_spec(ctx.name).input_stages}
    provenance = stage_provenance(stage=ctx.name, run=cfg.run, base_model=cfg.model.name_or_path,
                                  config={**train_cfg, "seed": cfg.seed},
                                  inputs=inputs,
                                  rubric_sha256=reward_rubric, rubric_source="reward model",
                                  rubric_path=project_path(cfg.principles.path))

    def online_metrics(trainer) -> dict:
        return {**reward_trajectory(trainer.state.log_history), "beta": section.beta,
                "num_generations": section.num_generations, "use_vllm": bool(trainer.args.use_vllm)}

    metrics = train_and_save(trainer, tokenizer, ctx.dir, cfg.resume, provenance,  # ZeRO-3: consolidated safetensors
                             metrics=online_metrics).metrics
    if is_main_process():
        atomic_write_json(ctx.dir / "metrics.json", metrics)
    log.info(f"{ctx.name}: mean reward {metrics.get('reward_first')} -> {metrics.get('reward_last')} "
             f"over {metrics['n_logged_steps']} logged steps (beta {metrics['beta']})")
    return {"counts": {"n_prompts": len(prompts)}, "metrics": metrics}


def make_main(method: str) -> Callable[[list[str] | None], int]:
    """Entry point of `counsel-align <method>`; its options are the ``<method>`` section (configs/<method>/)."""

    def run(cfg: DictConfig) -> dict:
        return run_stage(cfg, method, work)

    return entry(method, run)
