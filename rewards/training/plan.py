"""Dry-run planning: parameter count, per-GPU memory and token budget of a training stage from the model config alone.

Estimates, not measurements: mixed-precision Adam needs 2 (weights) + 2 (grads) + 12 (fp32 master, m, v) bytes per
trained parameter (fp32 training: 4 + 4 + 8); ZeRO-1/2/3 shard optimizer / + gradients / + weights over the GPUs;
activations assume gradient checkpointing keeps one layer input per layer plus one full layer, and the fp32 logits
(twice: logits and log-softmax) dominate for large vocabularies. No weights are loaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from rewards.errors import UserError
from rewards.training.options import STAGE_OPTIONS, options_dict, training_options

GIB = 1024**3
ARCH_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
FRAMEWORK_OVERHEAD_GIB = 2.0  # CUDA context, allocator fragmentation, communication buckets


@dataclass(frozen=True)
class Architecture:
    """The few config.json fields that size a decoder-only transformer."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    tie_word_embeddings: bool = False

    @classmethod
    def from_dict(cls, config: dict, source: str) -> Architecture:
        missing = [key for key in ARCH_KEYS if config.get(key) is None]
        if missing:
            raise UserError(f"{source}: model config lacks {missing}; give model.architecture with {list(ARCH_KEYS)}")
        fields = {*ARCH_KEYS, "num_key_value_heads", "head_dim", "tie_word_embeddings"}
        return cls(**{k: v for k, v in config.items() if k in fields and v is not None})

    def parameters(self) -> int:
        h, layers = self.hidden_size, self.num_hidden_layers
        head_dim = self.head_dim or h // self.num_attention_heads
        kv = (self.num_key_value_heads or self.num_attention_heads) * head_dim
        q = self.num_attention_heads * head_dim
        attention = h * q + 2 * h * kv + q * h
        mlp = 3 * h * self.intermediate_size
        per_layer = attention + mlp + 2 * h
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return layers * per_layer + embeddings + h

    def lora_parameters(self, rank: int) -> int:
        """LoRA on every linear layer of every block (target_modules=all-linear)."""
        h = self.hidden_size
        head_dim = self.head_dim or h // self.num_attention_heads
        kv = (self.num_key_value_heads or self.num_attention_heads) * head_dim
        q = self.num_attention_heads * head_dim
        shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, self.intermediate_size), (h, self.intermediate_size),
                  (self.intermediate_size, h)]
        return self.num_hidden_layers * sum(rank * (a + b) for a, b in shapes)


def load_architecture(model_cfg: dict, resolve_path) -> Architecture:
    """``model.architecture`` from the config if given, else the local ``config.json`` of model.name_or_path."""
    if model_cfg["architecture"]:
        return Architecture.from_dict(dict(model_cfg["architecture"]), "model.architecture")
    name = str(model_cfg["name_or_path"])
    local = Path(name)
    if not local.is_dir():
        if "/" in name and not name.startswith("embedded:"):
            raise UserError(f"model.name_or_path: {name!r} is not a local folder and the hub is not used in a dry run; "
                            "add model.architecture (config.json dims) to the preset")
        local = Path(resolve_path(name))
    config_file = local / "config.json"
    if not config_file.exists():
        raise UserError(f"{config_file}: not found; add model.architecture (config.json dims) to the config")
    return Architecture.from_dict(json.loads(config_file.read_text()), str(config_file))


def zero_settings(accelerate_config: str | Path, root: str | Path = ".") -> dict:
    """ZeRO stage and offloads named by an accelerate config file (stage 0 without DeepSpeed); relative paths
    inside it are relative to ``root`` (the launch directory)."""
    path = Path(accelerate_config)
    if not path.exists():
        raise UserError(f"distributed.accelerate_config: {path} not found (see configs/accelerate/)")
    launch = yaml.safe_load(path.read_text()) or {}
    if launch.get("distributed_type") != "DEEPSPEED":
        return {"stage": 0, "offload_optimizer": False, "offload_param": False}
    ds = launch.get("deepspeed_config", {})
    if ds.get("deepspeed_config_file"):
        ds_file = Path(ds["deepspeed_config_file"])
        ds_file = ds_file if ds_file.is_absolute() else Path(root) / ds_file
        if not ds_file.exists():
            raise UserError(f"{path}: deepspeed_config_file {ds_file} not found")
        zero = json.loads(ds_file.read_text()).get("zero_optimization", {})
        return {"stage": int(zero.get("stage", 0)),
                "offload_optimizer": zero.get("offload_optimizer", {}).get("device", "none") == "cpu",
                "offload_param": zero.get("offload_param", {}).get("device", "none") == "cpu"}
    return {"stage": int(ds.get("zero_stage", 0)), "offload_optimizer": ds.get("offload_optimizer_device") == "cpu",
            "offload_param": ds.get("offload_param_device") == "cpu"}


@dataclass
class MemoryEstimate:
    """Per-GPU bytes by component."""

    weights: float
    gradients: float
    optimizer: float
    reference: float
    activations: float
    overhead: float = FRAMEWORK_OVERHEAD_GIB * GIB

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference + self.activations + self.overhead

    def as_gib(self) -> dict[str, float]:
        parts = {k: v for k, v in self.__dict__.items()}
        return {k: round(v / GIB, 1) for k, v in {**parts, "total": self.total}.items()}


def estimate_memory(arch: Architecture, train_cfg: dict, zero: dict, gpus: int, stage: str) -> MemoryEstimate:
    """Per-GPU memory of a DPO (``stage='dpo'``) or reward-model (``'reward'``) training run.

    ``train_cfg``: the stage's options (``DPOOptions`` / ``RewardOptions``); those not given take its defaults.
    """
    train_cfg = options_dict(STAGE_OPTIONS[stage], train_cfg, stage)
    params = arch.parameters()
    half = bool(train_cfg["bf16"]) or str(train_cfg["dtype"]) in ("bfloat16", "float16")
    weight_bytes = 2 if half else 4
    peft = train_cfg["peft"] not in (None, "none")
    trained = arch.lora_parameters(int(train_cfg["lora"]["r"])) if peft else params
    if train_cfg["peft"] == "qlora":
        weight_bytes = 0.5
    grad_bytes, optim_bytes = (2, 12) if half else (4, 8)
    stage_n = zero["stage"]
    shard_w = gpus if stage_n >= 3 else 1
    shard_g = gpus if stage_n >= 2 else 1
    shard_o = gpus if stage_n >= 1 else 1
    weights = params * weight_bytes / shard_w + (trained * 2 if peft else 0)
    if zero["offload_param"]:
        weights = weights / max(1, arch.num_hidden_layers) * 2  # about two layers resident at a time
    optimizer = 0.0 if zero["offload_optimizer"] else trained * optim_bytes / shard_o
    gradients = trained * grad_bytes / shard_g
    reference = 0.0
    if stage == "dpo" and not peft and not train_cfg["precompute_ref_log_probs"]:
        reference = params * weight_bytes / (gpus if stage_n >= 3 else 1)  # TRL shards the reference only under ZeRO-3
    sequences = int(train_cfg["per_device_train_batch_size"]) * (2 if stage in ("dpo", "reward") else 1)
    tokens = sequences * int(train_cfg["max_length"])
    act_bytes = 2 if half else 4
    layer_inputs = tokens * arch.hidden_size * act_bytes * arch.num_hidden_layers
    one_layer = tokens * (34 * arch.hidden_size + 4 * arch.intermediate_size) * act_bytes / 2
    if not train_cfg["gradient_checkpointing"]:
        layer_inputs, one_layer = 0.0, one_layer * arch.num_hidden_layers
    logits = 2 * tokens * arch.vocab_size * 4 if stage == "dpo" else tokens * arch.hidden_size * 4
    return MemoryEstimate(weights=weights, gradients=gradients, optimizer=optimizer, reference=reference,
                          activations=layer_inputs + one_layer + logits)


def token_budget(train_pairs: int, train_cfg: dict, gpus: int, params: int, reference_forward: bool) -> dict:
    """Steps, upper-bound tokens (every sequence at max_length) and training FLOPs for one stage."""
    train_cfg = training_options(train_cfg)
    per_step = int(train_cfg["per_device_train_batch_size"]) * gpus * int(train_cfg["gradient_accumulation_steps"])
    epochs = float(train_cfg["num_train_epochs"])
    steps = math.ceil(train_pairs / per_step) * epochs if train_pairs else 0
    if int(train_cfg["max_steps"]) > 0:
        steps = int(train_cfg["max_steps"])
    tokens = int(steps * per_step * 2 * int(train_cfg["max_length"]))  # chosen + rejected
    flops = 6 * params * tokens + (2 * params * tokens if reference_forward else 0)  # DPO: + reference forward
    return {"pairs": train_pairs, "pairs_per_step": per_step, "steps": int(steps), "max_tokens": tokens,
            "train_flops": float(flops)}
