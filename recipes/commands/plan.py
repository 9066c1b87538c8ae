"""`counsel-align plan` (also `dry_run=true` on `dpo` and `pipeline`): the launch plan, per-GPU memory estimate and
token budget of the reward-model and DPO stages, from the model config alone (no weights are loaded)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import PROJECT_ROOT, entry, project_path, run_dir_of
from recipes.stages import pipeline_stages
from rewards.artifacts import read_manifest
from rewards.errors import UserError
from rewards.models import resolve_model_path
from rewards.training.plan import GIB, estimate_memory, load_architecture, token_budget, zero_settings


def _train_pairs(cfg: DictConfig) -> tuple[int, str]:
    manifest = read_manifest(run_dir_of(cfg) / "pairs")
    if manifest and "train_pairs" in manifest.get("counts", {}):
        return int(manifest["counts"]["train_pairs"]), "from this run's pairs stage"
    if cfg.distributed.train_pairs:
        return int(cfg.distributed.train_pairs), "distributed.train_pairs"
    per_prompt = sum(int(m.num_samples) for m in cfg.generate.pool)
    prompts = cfg.data.max_train_prompts or 0
    guess = int(prompts) * per_prompt * (per_prompt - 1) // 2
    return guess, f"upper bound: {prompts} prompts x all pairs of {per_prompt} candidates"


def _stage_plan(name: str, section: str, cfg: DictConfig, arch, zero: dict, gpus: int, pairs: int) -> dict:
    train_cfg = OmegaConf.to_container(cfg[section], resolve=True)
    memory = estimate_memory(arch, train_cfg, zero, gpus, stage=name)
    full_reference = name == "dpo" and not train_cfg["precompute_ref_log_probs"]
    budget = token_budget(pairs, train_cfg, gpus, arch.parameters(), reference_forward=full_reference)
    peak = float(cfg.distributed.gpu_peak_tflops) * 1e12 * float(cfg.distributed.mfu) * gpus
    hours = budget["train_flops"] / peak / 3600 if peak else float("nan")
    return {"stage": name, "peft": train_cfg["peft"], "memory_gib": memory.as_gib(), "budget": budget,
            "hours": hours, "fits": memory.total <= float(cfg.distributed.gpu_memory_gib) * GIB}


def build_plan(cfg: DictConfig) -> dict:
    dist = cfg.distributed
    gpus = int(dist.num_processes)
    if gpus < 1 or int(dist.num_machines) < 1 or gpus % int(dist.num_machines):
        raise UserError("distributed.num_processes must be a positive multiple of distributed.num_machines")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    arch = load_architecture(model_cfg, resolve_model_path)
    zero = zero_settings(project_path(dist.accelerate_config), root=PROJECT_ROOT)
    pairs, pairs_source = _train_pairs(cfg)
    return {"arch": arch, "zero": zero, "gpus": gpus, "pairs_source": pairs_source,
            "stages": [_stage_plan("reward", "reward", cfg, arch, zero, gpus, pairs),
                       _stage_plan("dpo", "dpo", cfg, arch, zero, gpus, pairs)]}


def format_plan(cfg: DictConfig, plan: dict) -> str:
    dist, zero, arch = cfg.distributed, plan["zero"], plan["arch"]
    offload = [k.split("_")[1] for k in ("offload_optimizer", "offload_param") if zero[k]]
    launch = (f"accelerate launch --config_file {dist.accelerate_config} --num_processes {dist.num_processes} "
              f"--num_machines {dist.num_machines}")
    lines = [f"plan for run '{cfg.run}' (dry run: nothing is loaded or trained)",
             f"  model      {cfg.model.name_or_path}: {arch.parameters() / 1e9:.2f}B parameters, "
             f"{arch.num_hidden_layers} layers, hidden {arch.hidden_size}, vocab {arch.vocab_size}",
             f"  launch     {launch} -m recipes.<stage> <same overrides>",
             f"  sharding   ZeRO-{zero['stage']}{' + CPU offload of ' + ', '.join(offload) if offload else ''} "
             f"over {plan['gpus']} GPU(s) on {dist.num_machines} machine(s)",
             f"  stages     {' -> '.join(spec.name for spec in pipeline_stages(cfg))} "
             "(generate/judge/evaluate run on one process)",
             f"  pairs      {plan['stages'][0]['budget']['pairs']} train pairs ({plan['pairs_source']})"]
    for stage in plan["stages"]:
        mem, budget = stage["memory_gib"], stage["budget"]
        verdict = "fits" if stage["fits"] else "DOES NOT FIT"
        lines += [f"  {stage['stage']:<10} peft={stage['peft']}; per-GPU memory ~{mem['total']} GiB ({verdict} in "
                  f"{dist.gpu_memory_gib} GiB): weights {mem['weights']}, grads {mem['gradients']}, optimizer "
                  f"{mem['optimizer']}, reference {mem['reference']}, activations {mem['activations']}, "
                  f"overhead {mem['overhead']}",
                  f"  {'':<10} {budget['steps']} steps x {budget['pairs_per_step']} pairs; token budget <= "
                  f"{budget['max_tokens']:,} tokens; ~{budget['train_flops']:.2e} FLOPs, ~{stage['hours']:.2f} h at "
                  f"{dist.mfu:.0%} MFU of {dist.gpu_peak_tflops} TFLOP/s per GPU"]
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict:
    plan = build_plan(cfg)
    print(format_plan(cfg, plan), flush=True)
    return plan


main = entry("plan", run)

if __name__ == "__main__":
    raise SystemExit(main())
