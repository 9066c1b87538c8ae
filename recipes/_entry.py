"""The edge between Hydra and the library: compose the config, run a stage, report user errors.

Every stage writes into ``<output_root>/<run>/<stage>/`` and finishes by writing ``manifest.json``.
A stage whose manifest matches its current fingerprint (config, inputs, rubric) is skipped.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes.option_types import check_options, config_values
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
from rewards.versions import code_version, package_versions

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PROJECT_ROOT = CONFIG_DIR.parent
FINGERPRINT_FILE = ".fingerprint"


def project_path(path: str | os.PathLike) -> Path:
    """Paths in configs are relative to the working directory, else to the project root."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return PROJECT_ROOT / candidate


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose ``configs/config.yaml`` with overrides, in struct mode: unknown keys are errors."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[_weight_override(o) for o in overrides])
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"config: {_hydra_message(exc)}") from None
    _check_group_sections(cfg)
    OmegaConf.set_struct(cfg, True)
    return cfg


# Sections filled from a config group (the root defaults list); `train@reward_train` places the train group there.
GROUP_SECTIONS = {"model": "model", "principles": "principles", "judge": "judge", "data": "data", "train": "train",
                  "reward_train": "train@reward_train"}


def _check_group_sections(cfg: DictConfig) -> None:
    """`reward_train=reward_full` replaces the section with a string instead of selecting a config: say so."""
    for section, selector in GROUP_SECTIONS.items():
        value = cfg.get(section)
        if value is not None and not isinstance(value, DictConfig):
            raise UserError(f"config: {section}={value} replaced the whole '{section}' section with a value; "
                            f"to select a config file write {selector}={value}")


WEIGHT_PREFIX = "principles.weights."


def _weight_override(override: str) -> str:
    """`principles.weights.<id>=w` adds a key to an empty mapping, which struct mode refuses; `++` adds or sets it.

    The ids are checked against the rubric when the command starts (``check_command_options``).
    """
    return f"++{override}" if override.startswith(WEIGHT_PREFIX) else override


def _hydra_message(exc: Exception) -> str:
    text = _one_line(exc)
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


@dataclass
class StageContext:
    """What a stage's work function receives."""

    cfg: DictConfig
    name: str
    run_dir: Path
    dir: Path

    def input_dir(self, stage: str) -> Path:
        path = self.run_dir / stage
        if read_manifest(path) is None:
            raise UserError(f"{path}: stage '{stage}' has not finished; run `counsel-align {stage}` first")
        return path


def _config_subset(cfg: DictConfig, keys: list[str]) -> dict:
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig | list)
            or OmegaConf.is_config(cfg[key]) else cfg[key] for key in keys}


def run_dir_of(cfg: DictConfig) -> Path:
    return project_path(cfg.output_root) / cfg.run


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
        manifest = read_manifest(run_dir / stage)
        if manifest is None:
            raise UserError(f"{run_dir / stage}: stage '{stage}' has not finished; run `counsel-align {stage}` first")
        input_manifests[stage] = manifest
    input_hashes = {stage: manifest["outputs_sha256"] for stage, manifest in input_manifests.items()}
    rubric_hash = own_rubric_hash if spec.uses_rubric else _inherited_rubric_hash(input_manifests)
    input_files = input_file_hashes(cfg, spec.input_paths)
    config = _config_subset(cfg, list(spec.config_keys))
    fingerprint = _fingerprint(name, config, input_hashes, rubric_hash, input_files)
    existing = read_manifest(stage_dir)
    if existing and existing.get("fingerprint") == fingerprint:
        print(f"[counsel-align] {name}: up to date, skipped ({stage_dir})", flush=True)
        return existing
    if not is_main_process():  # under `accelerate launch`: rank 0 prepares the folder and writes the manifest
        wait_for_file_text(stage_dir / FINGERPRINT_FILE, fingerprint)
        work(StageContext(cfg=cfg, name=name, run_dir=run_dir, dir=stage_dir))
        wait_for_all_ranks()  # rank 0 hashes the folder only after every rank has stopped writing to it
        return {"stage": name, "fingerprint": fingerprint}
    _prepare_stage_dir(stage_dir, fingerprint)
    print(f"[counsel-align] {name}: running -> {stage_dir}", flush=True)
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
    print(f"[counsel-align] {name}: done in {manifest['wall_seconds']:.1f}s", flush=True)
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


USAGE = """usage: counsel-align {stage} [key=value ...] [--cfg]

Hydra overrides, e.g. run=myrun experiment=quickstart model.name_or_path=Qwen/Qwen2.5-7B-Instruct.
--cfg prints the composed config and exits."""


def check_command_options(cfg: DictConfig, command: str) -> None:
    """Before any work: the option types of every stage ``command`` will run, and the ids of weight overrides."""
    sections = [key for spec in stages_of_command(command) for key in spec.config_keys]
    check_options(cfg, sections)
    if "principles" in sections and cfg.principles.get("weights"):
        from rewards.rubric import load_rubric

        load_rubric(project_path(cfg.principles.path)).weights(OmegaConf.to_container(cfg.principles.weights))


def entry(stage: str, run: Callable[[DictConfig], object]) -> Callable[[list[str] | None], int]:
    """A console/`python -m` entry point for one stage."""

    def main(argv: list[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        if any(a in ("-h", "--help") for a in args):
            print(USAGE.format(stage=stage))
            return 0
        show_config = "--cfg" in args
        overrides = [a for a in args if a != "--cfg"]
        try:
            cfg = compose_config(overrides)
            if show_config:
                print(OmegaConf.to_yaml(cfg))
                return 0
            check_command_options(cfg, stage)
            run(cfg)
        except UserError as exc:
            print(f"counsel-align {stage}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"counsel-align {stage}: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        return 0

    return main
