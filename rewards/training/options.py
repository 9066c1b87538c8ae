"""The options of every training stage (dpo, reward, grpo, rloo, sft, kto), typed once: each a dataclass whose fields
carry the default and a one-line meaning. ``recipes/config_schema.py`` registers them in Hydra's ConfigStore (the
``schema`` of configs/dpo/, configs/reward/, ...); the library functions that receive a stage's options as a plain
dict complete it with :func:`options_dict`, so a caller may pass only what differs and every default lives here.
No Hydra and no torch here: ``import rewards`` stays light.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from rewards.errors import UserError


@dataclass
class LoraOptions:
    """PEFT LoRA adapter settings (used when ``peft`` is lora or qlora)."""

    r: int = 16  # adapter rank
    alpha: float = 32  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: Any = "all-linear"  # module names, or "all-linear"


@dataclass
class TrainingOptions:
    """Options every training stage shares; they become TRL / transformers training arguments."""

    method: str = "dpo"  # what the stage trains; checked by the stage (dpo, reward, reward_multihead, grpo, ...)
    peft: str = "lora"  # none (full fine-tuning) | lora | qlora (4-bit nf4 base, CUDA only)
    lora: LoraOptions = field(default_factory=LoraOptions)  # adapter settings when peft is lora/qlora
    dtype: str = "float32"  # weights dtype when loading: float32 | bfloat16 | float16
    max_length: int = 512  # tokens of prompt + reply
    learning_rate: float = 5.0e-5  # peak learning rate
    num_train_epochs: float = 1  # passes over the training data (ignored when max_steps > 0)
    max_steps: int = -1  # optimizer steps; -1 = run num_train_epochs
    per_device_train_batch_size: int = 4  # examples per device per step
    gradient_accumulation_steps: int = 1  # steps accumulated per optimizer update
    gradient_checkpointing: bool = False  # recompute activations in backward to save memory
    bf16: bool = False  # bf16 mixed precision (GPU)
    warmup_ratio: float | None = None  # fraction of the steps with a linear warmup (null: the library default, 0)
    lr_scheduler_type: str | None = None  # transformers scheduler name (null: linear)
    logging_steps: int = 1  # log every this many steps
    save_steps: int = 50  # checkpoint every this many steps (resume points)
    save_total_limit: int | None = 2  # checkpoints kept; null = all
    # Passed to the TRL/transformers config only when set (null keeps the library's own default):
    weight_decay: float | None = None  # AdamW weight decay
    max_grad_norm: float | None = None  # gradient clipping norm
    optim: str | None = None  # transformers optimizer name (adamw_torch, adamw_bnb_8bit, ...)
    per_device_eval_batch_size: int | None = None  # examples per device when evaluating
    dataloader_num_workers: int | None = None  # data loader worker processes
    deepspeed: str | None = None  # a DeepSpeed JSON (usually given through `accelerate launch --config_file` instead)
    ddp_backend: str | None = None  # nccl | gloo ...; gloo is chosen for DeepSpeed without CUDA
    use_cpu: bool = False  # train on CPU even when a GPU is visible


@dataclass
class DPOOptions(TrainingOptions):
    """`counsel-align dpo` (configs/dpo/): TRL DPOTrainer."""

    method: str = "dpo"  # always dpo
    beta: float = 0.1  # strength of the KL tie to the reference
    loss_type: Any = "sigmoid"  # TRL DPOConfig.loss_type (or a list with loss_weights); docs/policy_training.md
    loss_weights: list[float] | None = None  # one weight per loss when loss_type is a list (e.g. RPO)
    label_smoothing: float = 0.0  # robust: assumed fraction of flipped labels (< 0.5); exo_pair: its epsilon
    init_from: str = "base"  # base | sft: start policy and reference from the SFT model (pipeline runs sft first)
    precompute_ref_log_probs: bool | None = None  # compute the reference log-probs once before training
    padding_free: bool | None = None  # TRL padding-free batches (flash attention)
    pad_to_multiple_of: int | None = None  # pad sequences to a multiple of this
    # held-out pairs TRL's evaluate() scores after training (eval_reward_margin, the sweep objective): the first N of
    # the test split; null = all, 0 = none (no objective)
    max_eval_pairs: int | None = None


@dataclass
class RewardOptions(TrainingOptions):
    """`counsel-align reward` (configs/reward/): Bradley–Terry reward model (TRL RewardTrainer) or one head per
    principle."""

    method: str = "reward"  # reward (one scalar head) | reward_multihead (one head per principle)
    learning_rate: float = 1.0e-4  # peak learning rate
    num_train_epochs: float = 2  # passes over the train pairs
    per_device_train_batch_size: int = 8  # pairs per device per step
    overflow: str = "drop"  # pairs over max_length: drop | truncate (keep the last tokens); both are counted
    use_margin: bool = True  # TRL margin term: -logsigmoid(r_c - r_r - margin), margin = the pairs' margin column
    center_rewards_coefficient: float | None = None  # TRL reward centering (e.g. 0.01); null = off
    merge_lora: bool = False  # export: merge the LoRA adapter into full safetensors weights
    margin_scale: float = 0.0  # method=reward_multihead: per-head margin = margin_scale * |judge score gap|


@dataclass
class OnlineOptions(TrainingOptions):
    """Online RLHF against the trained reward model (configs/grpo/, configs/rloo/)."""

    learning_rate: float = 1.0e-5  # peak learning rate
    beta: float = 0.04  # KL coefficient to the reference (base with the adapter off); 0 = no reference
    num_generations: int = 4  # completions per prompt
    max_completion_length: int = 96  # new tokens per completion
    temperature: float = 0.9  # sampling temperature of the completions
    top_p: float = 1.0  # nucleus sampling of the completions
    use_vllm: Any = "auto"  # auto = vLLM (colocate) when installed and on a GPU | true | false
    reward_batch_size: int = 8  # responses per reward-model forward pass
    # Passed to TRL only when set (null keeps TRL's default):
    num_iterations: int | None = None  # policy updates per generation batch
    epsilon: float | None = None  # clipping range of the policy ratio
    mask_truncated_completions: bool | None = None  # leave completions cut at max_completion_length out of the loss
    generation_batch_size: int | None = None  # completions generated per generation round
    steps_per_generation: int | None = None  # optimizer steps per generation round
    log_completions: bool | None = None  # log sample completions
    vllm_mode: str | None = None  # colocate | server
    vllm_gpu_memory_utilization: float | None = None  # vLLM's share of GPU memory in colocate mode


@dataclass
class GRPOOptions(OnlineOptions):
    """`counsel-align grpo` (configs/grpo/): TRL GRPOTrainer."""

    method: str = "grpo"  # always grpo
    loss_type: str = "dapo"  # TRL GRPO loss: grpo | dapo | dr_grpo | bnpo ...
    scale_rewards: str = "group"  # group | batch | none


@dataclass
class RLOOOptions(OnlineOptions):
    """`counsel-align rloo` (configs/rloo/): TRL RLOOTrainer (leave-one-out baseline)."""

    method: str = "rloo"  # always rloo
    beta: float = 0.05  # KL coefficient to the reference
    normalize_advantages: bool = False  # scale advantages to unit variance


@dataclass
class HumanDataOptions:
    """Where SFT/KTO read human counselor replies (CounselChat or a table like it)."""

    source: str = "nbertagnolli/counsel-chat"  # CounselChat folder, a CSV/JSONL, or a hub id
    columns: dict[str, str] = field(default_factory=dict)  # ranked-table columns when they differ from CounselChat's
    split: str = "train"  # val/test are refused: held-out questions are never trained on
    min_score: int = 1  # a question's top answer needs at least this many upvotes
    max_examples: int | None = None  # seeded subset; null = all


@dataclass
class SFTOptions(TrainingOptions):
    """`counsel-align sft` (configs/sft/): TRL SFTTrainer on the best-voted human reply per question."""

    method: str = "sft"  # always sft
    learning_rate: float = 1.0e-4  # peak learning rate
    data: HumanDataOptions = field(default_factory=HumanDataOptions)  # the human replies
    completion_only_loss: bool | None = None  # loss on the reply tokens only (null: TRL's default)
    packing: bool | None = None  # pack several examples per sequence
    assistant_only_loss: bool | None = None  # loss on assistant turns only
    pad_to_multiple_of: int | None = None  # pad sequences to a multiple of this


@dataclass
class KTOData(HumanDataOptions):
    """KTO's human data: top-voted answers desirable, low-scored answers of the same question undesirable."""

    undesirable_max_score: int = 0  # answers with at most this score are undesirable
    max_undesirable_per_question: int | None = 3  # seeded cap per question; null = all


@dataclass
class KTOOptions(TrainingOptions):
    """`counsel-align kto` (configs/kto/): TRL KTOTrainer on unpaired human signal."""

    method: str = "kto"  # always kto
    beta: float = 0.1  # strength of the KL tie to the reference
    loss_type: str = "kto"  # kto | apo_zero_unpaired
    desirable_weight: float = 0.9  # TRL's advice: desirable/undesirable weighted counts in [1, 4/3]
    undesirable_weight: float = 1.0  # see desirable_weight
    data: KTOData = field(default_factory=KTOData)  # the human answers
    precompute_ref_log_probs: bool | None = None  # compute the reference log-probs once before training


# The section each training stage reads its options from (`counsel-align <stage>` reads cfg.<stage>).
STAGE_OPTIONS: dict[str, type] = {"dpo": DPOOptions, "reward": RewardOptions, "grpo": GRPOOptions,
                                  "rloo": RLOOOptions, "sft": SFTOptions, "kto": KTOOptions}


def options_dict(options: type, given: Mapping[str, Any] | None = None, section: str = "train", *,
                 only_known: bool = True) -> dict[str, Any]:
    """``given`` (possibly partial, e.g. ``{"beta": 0.2}``) completed with the defaults of the dataclass ``options``;
    a nested section (``lora``, ``data``) given in part is completed the same way. Idempotent.

    A key ``options`` has no field for raises a one-line UserError naming ``<section>.<key>``; ``only_known=False``
    keeps such keys as given instead (the shared helpers receive any stage's section and read only the common keys).
    """
    return _complete(options, dict(given or {}), section, only_known)


def training_options(given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Any training stage's section with the options every stage shares (``TrainingOptions``) completed."""
    return options_dict(TrainingOptions, given, only_known=False)


def _complete(options: type, given: dict[str, Any], section: str, only_known: bool) -> dict[str, Any]:
    defaults = options()
    names = [f.name for f in fields(options)]
    unknown = [key for key in given if key not in names]
    if unknown and only_known:
        raise UserError(_unknown_message(options, section, unknown[0], names))
    result = {}
    for name in names:
        default = getattr(defaults, name)
        value = given.get(name, {})
        if is_dataclass(default) and isinstance(value, Mapping):  # a nested section: complete what was given of it
            result[name] = _complete(type(default), dict(value), f"{section}.{name}", only_known)
        else:
            result[name] = given[name] if name in given else default  # a fresh instance's: never shared
    result.update({key: given[key] for key in unknown})
    return result


def _unknown_message(options: type, section: str, key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"{section}.{key}: not an option of {options.__name__}; {hint}"
            f"the options are the fields of {options.__name__} in rewards/training/options.py")
