"""The edge between Hydra and the library: compose the config, run a stage, report user errors.

Every stage writes into ``<output_root>/<run>/<stage>/`` and finishes by writing ``manifest.json``.
A stage whose manifest matches its current fingerprint (config, inputs, rubric) is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

import recipes.config_schema  # noqa: F401  (registers the config schemas with Hydra's ConfigStore)
from recipes.project_files import output_path, project_path, project_root
from recipes.stages import STAGES, StageSpec, stages_of_command
from rewards.artifacts import (
    atomic_write_json,
    atomic_write_text,
    kill_point,
    read_manifest,
    sha256_file,
    sha256_json,
    sha256_tree,
)
from rewards.distributed import is_main_process, wait_for_all_ranks, wait_for_file_text
from rewards.errors import UserError
from rewards.log import get_logger, set_verbosity
from rewards.versions import code_version, package_versions

log = get_logger(__name__)

PROJECT_ROOT = project_root()  # configs/, principles/, data/: the checkout, else the installed copy
CONFIG_DIR = PROJECT_ROOT / "configs"
FINGERPRINT_FILE = ".fingerprint"


def _output_root(path: str) -> str:
    """``${counsel_output_root:${output_root}}`` in Hydra's run/sweep dirs: the same folder stages write to."""
    return str(output_path(path))


if not OmegaConf.has_resolver("counsel_output_root"):
    OmegaConf.register_new_resolver("counsel_output_root", _output_root)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def compose_config(overrides: list[str], command: str | None = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with overrides, in struct mode: unknown keys and wrong types are errors.

    ``command`` decides where deprecated ``train.*`` overrides go (the grpo/rloo section for those stages).
    """
    from hydra import compose, initialize_config_dir

    overrides = [_weight_override(o) for o in rewrite_deprecated(overrides, command)]
    with _user_errors():
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        OmegaConf.resolve(cfg)
    _check_group_sections(cfg)
    _check_nothing_missing(cfg)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _check_nothing_missing(cfg: DictConfig) -> None:
    """A schema's ``???`` (a value only the user can give, e.g. a human source's path) left unset is refused."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"config: {', '.join(missing)} not set; give a value on the command line or in the config file")


@contextlib.contextmanager
def _user_errors():
    """Hydra's and OmegaConf's composition errors become one-line UserErrors."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"config: {_hydra_message(exc)}") from None


# Sections filled from a config group (the root defaults list).
GROUP_SECTIONS = ("model", "principles", "judge", "data", "dpo", "reward", "grpo", "rloo", "sft", "kto")


def _check_group_sections(cfg: DictConfig) -> None:
    """`dpo.x=...` is a key; `dpo=full` selects a file; a scalar in a section's place means `+dpo=...`-like misuse."""
    for section in GROUP_SECTIONS:
        value = cfg.get(section)
        if value is not None and not isinstance(value, DictConfig):
            raise UserError(f"config: {section}={value} replaced the whole '{section}' section with a value; "
                            f"to select a config file write {section}=<one of configs/{section}/>")


# Old spellings (one release): `train=<file>` and `train@reward_train=<file>` -> the stage-named groups.
_OLD_TRAIN_FILES = {"dpo_lora": "dpo=lora", "dpo_full": "dpo=full", "dpo_qlora": "dpo=qlora", "grpo": "grpo=lora",
                    "rloo": "rloo=lora"}
_OLD_REWARD_FILES = {"reward": "reward=lora", "reward_full": "reward=full", "reward_qlora": "reward=qlora",
                     "reward_multihead": "reward=multihead"}
_warned: set[str] = set()


def rewrite_deprecated(overrides: list[str], command: str | None = None) -> list[str]:
    """Rewrite overrides in the old spellings, printing one deprecation line per spelling and process."""
    section = command if command in ("grpo", "rloo") else "dpo"  # where `train.*` keys now live
    rewritten = []
    for override in overrides:
        new = _rewrite_one(override, section)
        if new != override and override not in _warned:
            _warned.add(override)
            log.warning(f"deprecated: {override} -> {new} (the old spelling goes in the next release)")
        rewritten.append(new)
    return rewritten


def _rewrite_one(override: str, section: str) -> str:
    prefix = override[: len(override) - len(override.lstrip("+~"))]
    body = override[len(prefix):]
    key, sep, value = body.partition("=")
    if key in ("train@reward_train", "reward_train") and value in _OLD_REWARD_FILES:
        return prefix + _OLD_REWARD_FILES[value]
    if key == "train" and value in _OLD_TRAIN_FILES:
        return prefix + _OLD_TRAIN_FILES[value]
    if key.startswith("reward_train."):
        return f"{prefix}reward.{key.removeprefix('reward_train.')}{sep}{value}"
    if key.startswith("train."):
        return f"{prefix}{section}.{key.removeprefix('train.')}{sep}{value}"
    return override


WEIGHT_PREFIX = "principles.weights."


def _weight_override(override: str) -> str:
    """`principles.weights.<id>=w` adds a key to an empty mapping, which struct mode refuses; `++` adds or sets it.

    The ids are checked against the rubric when the command starts (``check_command_options``).
    """
    return f"++{override}" if override.startswith(WEIGHT_PREFIX) else override


_KINDS = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}


def _overridden_key(exc: Exception) -> str | None:
    """The key of the command-line override Hydra failed to apply (``generate.pool`` in "Could not override ...")."""
    text = _one_line(exc)
    for marker, end in (("Could not override '", "'"), ("Error merging override ", "=")):
        if marker in text:
            return text.split(marker, 1)[1].split(end, 1)[0].lstrip("+~")
    return None


def _full_key(exc: Exception, cause: Exception) -> str:
    """The option's dotted key; a key inside an overridden list's items is named below it (``generate.pool[*].x``).

    OmegaConf names such a key relative to the list item it was validating.
    """
    key = str(getattr(cause, "full_key", "") or "")
    overridden = _overridden_key(exc)
    if overridden and not key.startswith(overridden):
        return f"{overridden}[*].{key}"
    return key


def _type_message(exc: Exception) -> str | None:
    """``dpo.learning_rate='abc' is not a number`` from the ValidationError a typed option raises."""
    from omegaconf.errors import ValidationError

    cause = exc if isinstance(exc, ValidationError) else exc.__cause__
    if not isinstance(cause, ValidationError) or not getattr(cause, "full_key", None):
        return None
    full_key = _full_key(exc, cause)
    text = _one_line(cause.msg)
    kind = next((words for name, words in _KINDS.items() if f"converted to {name}" in text), None)
    if kind is None and "valid bool" in text:
        kind = "true or false"
    if kind is None and "is not Optional" in text:
        kind = "set (it cannot be null)"
    if kind is None:
        return f"{full_key}: {text}"
    value = "null" if cause.value is None else repr(cause.value)
    return f"{full_key}={value} is not {kind}; fix the value on the command line or in the config file"


def _unknown_key_message(exc: Exception) -> str | None:
    """A key no schema has, also inside an overridden list's items (``generate.pool='[{tempreature: 1}]'``)."""
    from omegaconf.errors import ConfigKeyError

    cause = exc if isinstance(exc, ConfigKeyError) else exc.__cause__
    if not isinstance(cause, ConfigKeyError) or not getattr(cause, "full_key", None):
        return None
    return f"unknown key '{_full_key(exc, cause)}' (check its spelling; `counsel-align <stage> --cfg` prints every key)"


def _hydra_message(exc: Exception) -> str:
    typed = _type_message(exc) or _unknown_key_message(exc)
    if typed:
        return typed
    text = _one_line(exc).split(" Config search path:")[0]
    if "Ambiguous value for argument" in text:
        # Hydra's own hint offers --multirun, which counsel-align does not take.
        argument = text.split("'")[1] if "'" in text else text
        key = argument.split("=")[0]
        return (f"{argument}: a comma makes the value ambiguous; write {key}=[a,b] for a list or {key}='a,b' for a "
                "string (sweeps are not supported: run the command once per value)")
    if "is not in struct" in text or "Could not override" in text:
        key = text.split("'")[1] if "'" in text else text
        return f"unknown key '{key}' (check its spelling; `counsel-align <stage> --cfg` prints every key)"
    if "Could not find" in text or "Could not load" in text:
        return f"{text} (see the folders under configs/ for the available options)"
    return text


def command_of(stage: str) -> str:
    """The CLI command that runs ``stage`` (``reward_eval`` -> ``reward-eval``)."""
    return STAGES[stage].cli_name if stage in STAGES else stage


@dataclass
class StageContext:
    """What a stage's work function receives."""

    cfg: DictConfig
    name: str
    run_dir: Path
    dir: Path

    def input_dir(self, stage: str) -> Path:
        path = input_stage_dir(self.cfg, self.run_dir, stage)
        if read_manifest(path) is None:
            raise UserError(f"{path}: stage '{stage}' has not finished; run `counsel-align {command_of(stage)}` first")
        return path


def _config_subset(cfg: DictConfig, keys: list[str]) -> dict:
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig | list)
            or OmegaConf.is_config(cfg[key]) else cfg[key] for key in keys}


def run_dir_of(cfg: DictConfig) -> Path:
    """This run's folder: Hydra's output folder when the CLI ran it (``run_dir``), else ``<output_root>/<run>``."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return output_path(cfg.output_root) / cfg.run  # under the working directory unless absolute


def input_stage_dir(cfg: DictConfig, run_dir: Path, stage: str) -> Path:
    """Where an input stage's outputs are: this run's folder, else ``inputs_from`` (the run a sweep extends)."""
    own = run_dir / stage
    if read_manifest(own) is not None or not cfg.inputs_from:
        return own
    return output_path(cfg.inputs_from) / stage


def _rubric_hash(cfg: DictConfig) -> str:
    from rewards.rubric import load_rubric

    return load_rubric(project_path(cfg.principles.path)).content_hash()


def forget_failed_run(stage_dir: Path) -> None:
    """A finished run with failed items is not final: drop its manifest so the rerun retries them (and only them)."""
    manifest = read_manifest(stage_dir)
    if manifest and manifest.get("counts", {}).get("n_failed"):
        (stage_dir / "manifest.json").unlink()


def _resolve_spec(name: str, config_keys: list[str] | None, inputs: list[str] | None,
                  uses_rubric: bool | None) -> StageSpec:
    """The stage's registry entry; explicit arguments override it (evaluate of a checkpoint reads no stage)."""
    if name in STAGES:
        spec = STAGES[name]
    elif config_keys is not None:  # a stage not declared yet: everything comes from the arguments
        spec = StageSpec(name, f"recipes.{name}", "")
    else:
        raise KeyError(f"stage {name!r} is not declared in recipes/stages.py; add a StageSpec for it")
    changes = {key: tuple(value) if isinstance(value, list) else value for key, value in
               (("config_keys", config_keys), ("input_stages", inputs), ("uses_rubric", uses_rubric))
               if value is not None}
    return replace(spec, **changes)


def config_values(cfg: DictConfig, key: str) -> Iterator[tuple[str, Any]]:
    """``(concrete key, value)`` for a dotted key where ``list[*]`` names every item of a list (missing keys: none)."""
    yield from _walk(cfg, key.split(".") if key else [], "")


def _walk(node: Any, parts: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield prefix, node
        return
    head, rest = parts[0], parts[1:]
    many = head.endswith("[*]")
    name = head.removesuffix("[*]")
    if not isinstance(node, DictConfig) or name not in node:
        return
    child, path = node[name], f"{prefix}.{name}" if prefix else name
    if not many:
        yield from _walk(child, rest, path)
    elif isinstance(child, ListConfig):
        for index, item in enumerate(child):
            yield from _walk(item, rest, f"{path}[{index}]")


def input_file_hashes(cfg: DictConfig, keys: tuple[str, ...]) -> dict[str, str]:
    """Content hash of every file or folder the stage reads, keyed by the path as configured."""
    hashes = {}
    for key in keys:
        for _, value in config_values(cfg, key):
            if not isinstance(value, str) or not value:
                continue
            path = project_path(value)
            if path.is_file():
                hashes[value] = sha256_file(path)
            elif path.is_dir():
                hashes[value] = sha256_tree(path)
            # anything else ("base", a hub id) is no local file; its name is in the config part of the fingerprint
    return hashes


def _inherited_rubric_hash(input_manifests: dict[str, dict]) -> str | None:
    """A stage that does not read the rubric carries the rubric hash its inputs were made with."""
    hashes = [m.get("rubric_sha256") for m in input_manifests.values() if m.get("rubric_sha256")]
    return hashes[0] if hashes else None


def run_stage(cfg: DictConfig, name: str, work: Callable[[StageContext], dict], config_keys: list[str] | None = None,
              inputs: list[str] | None = None, uses_rubric: bool | None = None) -> dict:
    """Run ``work`` unless its outputs are already up to date; returns the stage manifest.

    What the stage reads (input stages, input files, config sections, rubric) comes from its ``recipes.stages``
    entry; the optional arguments override it.
    """
    spec = _resolve_spec(name, config_keys, inputs, uses_rubric)
    run_dir = run_dir_of(cfg)
    stage_dir = run_dir / name
    own_rubric_hash = _rubric_hash(cfg) if spec.uses_rubric else None  # a bad rubric is named before missing inputs
    input_manifests = {}
    for stage in spec.input_stages:
        manifest = read_manifest(input_stage_dir(cfg, run_dir, stage))
        if manifest is None:
            raise UserError(f"{run_dir / stage}: stage '{stage}' has not finished; "
                            f"run `counsel-align {command_of(stage)}` first")
        input_manifests[stage] = manifest
    input_hashes = {stage: manifest["outputs_sha256"] for stage, manifest in input_manifests.items()}
    rubric_hash = own_rubric_hash if spec.uses_rubric else _inherited_rubric_hash(input_manifests)
    input_files = input_file_hashes(cfg, spec.input_paths)
    config = _config_subset(cfg, list(spec.config_keys))
    fingerprint = _fingerprint(name, config, input_hashes, rubric_hash, input_files)
    existing = read_manifest(stage_dir)
    if existing and existing.get("fingerprint") == fingerprint:
        log.info(f"{name}: up to date, skipped ({stage_dir})")
        return existing
    if not is_main_process():  # under `accelerate launch`: rank 0 prepares the folder and writes the manifest
        wait_for_file_text(stage_dir / FINGERPRINT_FILE, fingerprint)
        work(StageContext(cfg=cfg, name=name, run_dir=run_dir, dir=stage_dir))
        wait_for_all_ranks()  # rank 0 hashes the folder only after every rank has stopped writing to it
        return {"stage": name, "fingerprint": fingerprint}
    _prepare_stage_dir(stage_dir, fingerprint)
    log.info(f"{name}: running -> {stage_dir}")
    started = time.perf_counter()
    result = work(StageContext(cfg=cfg, name=name, run_dir=run_dir, dir=stage_dir)) or {}
    wait_for_all_ranks()
    manifest = {
        "stage": name,
        "fingerprint": fingerprint,
        "config": config,
        "inputs": input_hashes,
        "input_files": input_files,
        "rubric_sha256": rubric_hash,
        "versions": package_versions(),
        "code_version": code_version(),
        "counts": result.get("counts", {}),
        "metrics": result.get("metrics", {}),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "outputs_sha256": sha256_tree(stage_dir),
    }
    kill_point("manifest.write")  # outputs complete, manifest not yet written
    atomic_write_json(stage_dir / "manifest.json", manifest)
    log.info(f"{name}: done in {manifest['wall_seconds']:.1f}s")
    return manifest


def _fingerprint(name: str, config: dict, inputs: dict, rubric_hash: str | None, input_files: dict) -> str:
    parts = {"stage": name, "config": config, "inputs": inputs, "rubric": rubric_hash}
    if input_files:  # only when there are any, so stages that read no files keep the fingerprints they had
        parts["input_files"] = input_files
    return sha256_json(parts)


def _prepare_stage_dir(stage_dir: Path, fingerprint: str) -> None:
    """Keep partial work of the same fingerprint (to resume); clear anything stale."""
    marker = stage_dir / FINGERPRINT_FILE
    if stage_dir.exists() and (not marker.exists() or marker.read_text().strip() != fingerprint):
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "manifest.json").unlink(missing_ok=True)
    atomic_write_text(marker, fingerprint)


USAGE = """usage: counsel-align {stage} [key=value ...] [-m|--multirun] [--cfg job|hydra] [--info] [-q|-v]

Hydra overrides, e.g. run=myrun experiment=quickstart dpo=full dpo.beta=0.2 model.name_or_path=Qwen/Qwen2.5-7B-Instruct.
  --cfg [job|hydra]   print the composed config (job, the default) or Hydra's own settings, and exit
  --info              print Hydra's config search path, defaults tree and plugins, and exit
  -m, --multirun      sweep: `{stage} -m reward.learning_rate=1e-4,3e-4 reward.lora.r=8,16` runs every combination,
                      each point in outputs/<run>/<swept overrides>/ reading the stages it does not run from
                      outputs/<run>/; hydra/launcher=submitit_slurm_accelerate|submitit_local|joblib and
                      hydra/sweeper=reward_search (Optuna) come with `pip install -e ".[cluster]"`
  hydra.run.dir=DIR   where this run's stage folders and .hydra/ go (default outputs/<run>)
  -q, --quiet         warnings only; -v, --verbose: debug lines too
  --hydra-help        Hydra's own help"""


def check_command_options(cfg: DictConfig, command: str) -> None:
    """Before any work: the principle ids of weight overrides, for every stage ``command`` will run.

    Option types and keys need no check here: the schemas (``recipes.config_schema``) refuse them when Hydra composes.
    """
    _check_union_options(cfg)
    _check_judge_backend(cfg)
    sections = [key for spec in stages_of_command(command) for key in spec.config_keys]
    if "principles" in sections and cfg.principles.weights:
        from rewards.rubric import load_rubric

        load_rubric(project_path(cfg.principles.path)).weights(OmegaConf.to_container(cfg.principles.weights))



RESUME_MODES = ("auto", "true", "false")  # as rewards.training.checkpointing.RESUME_MODES (not imported: transformers)


def _check_union_options(cfg: DictConfig) -> None:
    """``threads`` (auto | N) and ``resume`` (auto | true | false) mix a word and a number or bool, which the schema
    cannot type (OmegaConf has no unions of scalars): checked here, before the first stage rather than inside it."""
    fix = "fix the value on the command line or in the config file"
    if str(cfg.resume).lower() not in RESUME_MODES:
        raise UserError(f"config: resume={cfg.resume!r} is not auto, true or false; {fix}")
    threads = str(cfg.threads).strip().lower()
    if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
        raise UserError(f"config: threads={cfg.threads!r} is not auto or a positive integer; {fix}")


def _check_judge_backend(cfg: DictConfig) -> None:
    """``judge.backend`` picks the judge's code, its schema the options it has: the two must agree."""
    schema = OmegaConf.get_type(cfg.judge)
    expected = getattr(schema, "backend", None)
    if isinstance(expected, str) and cfg.judge.backend != expected:
        raise UserError(f"config: judge.backend={cfg.judge.backend} does not fit the options of this judge "
                        f"({expected}); choose the judge file instead, e.g. judge={cfg.judge.backend}")


class StageStopped(BaseException):
    """Raised inside Hydra's job runner to stop with an exit code; a BaseException so Hydra does not wrap it."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class StageCrashed(BaseException):
    """Carries an unexpected exception out of Hydra's job runner, which would otherwise print it and exit 1: the
    caller sees the original exception and its traceback, as without Hydra."""

    def __init__(self, error: Exception):
        super().__init__(repr(error))
        self.error = error


def _normalise_args(args: list[str]) -> list[str]:
    """`--cfg` alone keeps meaning "print the resolved job config", as before Hydra's command line."""
    out: list[str] = []
    for index, arg in enumerate(args):
        out.append(arg)
        following = args[index + 1] if index + 1 < len(args) else None
        if arg in ("--cfg", "-c") and following not in ("job", "hydra", "all"):
            out.append("job")
    shown = [out[i + 1] for i, a in enumerate(out[:-1]) if a in ("--cfg", "-c")]
    if shown == ["job"] and "--resolve" not in out:  # Hydra's own settings resolve only inside a job
        out.append("--resolve")
    return out


def _sweep_points(overrides: list[str]) -> tuple[list[list[str]], list[str]]:
    """Override lists to compose before a sweep starts (each value of each swept key), and the keys not swept."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with _user_errors():
        parsed = OverridesParser.create().parse_overrides(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    fixed_keys = [o.get_key_element() for o in parsed if not o.is_sweep_override()]
    points = [plain]
    for override in parsed:
        if not override.is_sweep_override():
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # an Optuna interval/tag: the sweeper picks values; check the other keys only
            continue
        key = override.get_key_element()
        points += [[*plain, f"{key}={value}"] for value in values]
    return points, fixed_keys


def _check_before_launch(overrides: list[str], command: str, multirun: bool) -> tuple[list[str], bool]:
    """Compose what will run (every value of every swept key) and check its options, before any job starts.

    Returns the keys given one value (not swept): a sweep point is named after the others; and whether it is a
    dry run (which writes nothing, not even Hydra's record).
    """
    own = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]  # Hydra's settings are Hydra's to check
    points, fixed_keys = _sweep_points(own) if multirun else ([own], [])
    dry_run = False
    for point in points:
        cfg = compose_config(point, command)
        check_command_options(cfg, command)
        dry_run = dry_run or cfg.dry_run
    return [k for k in fixed_keys if not k.startswith("hydra")], dry_run


def _prepare_job_config(cfg: DictConfig, command: str, fixed_keys: list[str]) -> DictConfig:
    """The config Hydra hands a job, made what stages expect: resolved, struct, and pointed at the job's folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    hydra_cfg = HydraConfig.get()
    with _user_errors():
        OmegaConf.resolve(cfg)
    _check_group_sections(cfg)
    with open_dict(cfg):
        if hydra_cfg.job.chdir:  # Hydra has changed into the job's folder: the output root is where it was before
            with contextlib.chdir(hydra_cfg.runtime.cwd):
                cfg.output_root = str(output_path(cfg.output_root).resolve())
        if not cfg.dry_run:
            cfg.run_dir = hydra_cfg.runtime.output_dir  # hydra.run.dir, or the sweep point's folder
        base = output_path(cfg.output_root) / cfg.run
        if hydra_cfg.mode == RunMode.MULTIRUN and cfg.run_dir and Path(cfg.run_dir) != base:  # a point below the run
            cfg.inputs_from = cfg.inputs_from or str(base)  # upstream stages come from the run the sweep extends
            cfg.run = f"{cfg.run}/{hydra_cfg.job.override_dirname}"
    OmegaConf.set_struct(cfg, True)
    check_command_options(cfg, command)
    return cfg


def _under_accelerate() -> bool:
    return "LOCAL_RANK" in os.environ or "ACCELERATE_PROCESS_ID" in os.environ


def accelerate_command(cfg: DictConfig, module: str, overrides: list[str], env: dict[str, str]) -> list[str]:
    """`accelerate launch ... -m <module> <overrides>` for this job; on SLURM, this node's rank and the rendezvous.

    Mirrors configs/accelerate/slurm_launch.sh: machine rank = SLURM_NODEID, main process = the job's first host.
    """
    machines = int(cfg.distributed.num_machines)
    command = ["accelerate", "launch", "--config_file", str(project_path(cfg.distributed.accelerate_config)),
               "--num_processes", str(cfg.distributed.num_processes), "--num_machines", str(machines)]
    if machines > 1:
        nodes = env.get("SLURM_JOB_NODELIST")
        if not nodes:
            raise UserError("launch.accelerate with distributed.num_machines > 1 needs a SLURM job (no "
                            "SLURM_JOB_NODELIST); use hydra/launcher=submitit_slurm_accelerate")
        first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        command += ["--machine_rank", env.get("SLURM_NODEID", "0"), "--main_process_ip", first,
                    "--main_process_port", str(cfg.launch.main_process_port),
                    "--deepspeed_multinode_launcher", "standard"]
    return [*command, "-m", module, *overrides]


def _run_under_accelerate(cfg: DictConfig, command: str, module: str) -> dict:
    """Run this job's stage in `accelerate launch` worker processes; returns the manifest they wrote."""
    from hydra.core.hydra_config import HydraConfig

    job = list(HydraConfig.get().overrides.task)
    quoted = {key: f"'{value}'" if value else "null" for key, value in  # quoted: point names hold '=' and ','
              (("run", cfg.run), ("hydra.run.dir", cfg.run_dir), ("inputs_from", cfg.inputs_from))}
    pinned = [*(f"{key}={value}" for key, value in quoted.items()),
              "launch.accelerate=false", "hydra.output_subdir=null"]
    argv = accelerate_command(cfg, module, [*job, *pinned], dict(os.environ))
    log.info(f"{command}: {' '.join(argv)}")
    if subprocess.run(argv, check=False).returncode != 0:
        raise UserError(f"{command}: `accelerate launch` failed (its output is above); rerun to resume")
    spec = STAGES.get(command)
    return (read_manifest(run_dir_of(cfg) / spec.name) if spec else None) or {}


def _objective(command: str, result: object) -> float | None:
    """The number a sweeper optimises: the registry's ``objective`` metric of the stage this command ran."""
    spec = STAGES.get(command) or next(iter(stages_of_command(command)), None)
    if command == "pipeline":
        spec = STAGES.get("evaluate")
    if spec is None or not spec.objective:
        return None
    manifest = result if isinstance(result, dict) and "metrics" in result else None
    if manifest is None:
        return None
    value = manifest.get("metrics", {}).get(spec.objective)
    return float(value) if isinstance(value, int | float) else None


def _hydra_overrides(fixed_keys: list[str]) -> list[str]:
    """A sweep point's folder is named after its swept overrides only (`reward.learning_rate=0.001,...`)."""
    keys = sorted(set(fixed_keys) | {"run", "output_root", "inputs_from"})
    return [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(keys)}]"]


def handle_errors(command: str, action: Callable[[], int | None]) -> int:
    """Run one command; the one place a user error becomes ``counsel-align <command>: error: <one line>`` and exit 2.

    Every stage and command goes through here, so the wording, the stream (stderr) and the exit codes are the same
    everywhere: 0 done, 2 a user error (no traceback), 130 interrupted.
    """
    try:
        return action() or 0
    except UserError as exc:
        print(f"counsel-align {command}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"counsel-align {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


VERBOSITY_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose"}


def pop_verbosity(args: list[str]) -> list[str]:
    """Apply ``--quiet``/``--verbose`` (any position) to the logger; the remaining arguments."""
    chosen = {VERBOSITY_FLAGS[a] for a in args if a in VERBOSITY_FLAGS}
    if chosen:
        set_verbosity(quiet="quiet" in chosen, verbose="verbose" in chosen)
    return [a for a in args if a not in VERBOSITY_FLAGS]


def entry(stage: str, run: Callable[[DictConfig], object]) -> Callable[[list[str] | None], int]:
    """A console/`python -m` entry point for one stage (or `pipeline`), with Hydra's command line."""

    def main(argv: list[str] | None = None) -> int:
        from hydra._internal.utils import _run_hydra, get_args_parser

        args = pop_verbosity(list(sys.argv[1:] if argv is None else argv))
        if any(a in ("-h", "--help") for a in args):
            print(USAGE.format(stage=stage))
            return 0
        parser = get_args_parser()
        parser.prog = f"counsel-align {stage}"
        try:
            parsed = parser.parse_intermixed_args(_normalise_args(args))
        except SystemExit as exc:  # argparse has printed its one line
            return int(exc.code or 0)
        parsed.overrides = [_weight_override(o) for o in rewrite_deprecated(parsed.overrides, stage)]

        def task(cfg: DictConfig) -> float | None:
            objective = None

            def job() -> None:
                nonlocal objective
                prepared = _prepare_job_config(cfg, stage, fixed_keys)
                if prepared.launch.accelerate and not _under_accelerate():
                    objective = _objective(stage, _run_under_accelerate(prepared, stage, run.__module__))
                else:
                    objective = _objective(stage, run(prepared))

            try:
                code = handle_errors(stage, job)
            except Exception as exc:
                raise StageCrashed(exc) from None
            if code:
                raise StageStopped(code)
            return objective

        task.__module__ = run.__module__  # Hydra names the job after the stage module

        def launch() -> int:
            nonlocal fixed_keys
            try:
                fixed_keys, dry_run = ([], False) if parsed.cfg or parsed.info else _check_before_launch(
                    parsed.overrides, stage, parsed.multirun)
                parsed.overrides = [*_hydra_overrides(fixed_keys), *parsed.overrides]
                if dry_run:  # a plan prints and writes nothing: no job folder, no .hydra/
                    parsed.overrides += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra.sweep.dir=."]
                if os.environ.get("RANK", "0") != "0":  # under `accelerate launch`, rank 0 alone writes .hydra/
                    parsed.overrides.append("hydra.output_subdir=null")
                _run_hydra(args=parsed, args_parser=parser, task_function=task, config_path=str(CONFIG_DIR),
                           config_name="config")
            except StageStopped as stop:
                return stop.code
            except StageCrashed as crash:
                raise crash.error from None
            except SystemExit as exc:  # Hydra's own reporting (it has printed the reason)
                return int(exc.code) if isinstance(exc.code, int) else 1
            return 0

        fixed_keys: list[str] = []
        return handle_errors(stage, launch)

    return main
