"""The stage registry: one declaration per stage, read by the CLI, the pipeline, plan, report, runs and the fingerprint.

A new stage is one ``StageSpec`` entry below plus its ``recipes/<module>.py`` (whose ``run(cfg)`` calls
``run_stage(cfg, name, work)``); everything else (command list, pipeline order, option checks, fingerprint inputs,
report and runs ordering) follows from the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class StageSpec:
    """What a stage is and what it reads; its fingerprint covers all of it."""

    name: str  # the folder under outputs/<run>/ and the manifest's "stage"
    module: str  # recipes module exposing ``main(argv) -> int`` (and ``run(cfg)`` for pipeline stages)
    help: str  # one line for `counsel-align --help`
    input_stages: tuple[str, ...] = ()  # stages whose finished outputs this one reads
    # Config keys whose values are files or folders the stage reads; their content is hashed into the fingerprint.
    # ``section.list[*].field`` names a field of every item of a list. Values that are no existing path (null,
    # "base", a hub id) are skipped.
    input_paths: tuple[str, ...] = ()
    config_keys: tuple[str, ...] = ()  # config sections whose values are part of the fingerprint
    uses_rubric: bool = False  # reads principles/*.yaml itself (else its rubric hash is inherited from its inputs)
    in_pipeline: bool = False  # run by `counsel-align pipeline`, in registry order
    command: str = ""  # CLI name when it differs from ``name``
    # For a pipeline stage that runs only in some configurations: whether this configuration runs it.
    runs_when: Callable[[DictConfig], bool] | None = None
    # The manifest metric a sweeper optimises (the float the stage returns under `-m hydra/sweeper=...`); "" = none.
    objective: str = ""

    @property
    def cli_name(self) -> str:
        return self.command or self.name


def _sft_is_used(cfg: DictConfig) -> bool:
    """DPO starts from the SFT model, or evaluate compares with it (``evaluate.reference``/``extra_references``)."""
    compared_with = [cfg.evaluate.reference, *(cfg.evaluate.get("extra_references") or [])]
    return cfg.dpo.init_from == "sft" or "sft" in compared_with


def _reward_eval_configured(cfg: DictConfig) -> bool:
    """The pipeline runs reward_eval when it has human pairs to test the reward model on."""
    return bool(cfg.reward_eval.counselchat)


_SPECS = (
    StageSpec("sft", "recipes.sft", "supervised warm start on human counselor replies (best-voted per question)",
              input_paths=("sft.data.source",), config_keys=("model", "sft", "seed"), in_pipeline=True,
              runs_when=_sft_is_used),
    StageSpec("generate", "recipes.generate", "select client prompts, generate candidate replies from the pool",
              input_paths=("data.prompts",),
              config_keys=("model", "data", "generate", "seed"), in_pipeline=True),
    StageSpec("calibrate", "recipes.calibrate", "the judge's agreement with human preferences (CounselChat val)",
              input_paths=("calibration.source",), config_keys=("calibration", "judge", "principles", "device", "seed"),
              uses_rubric=True, in_pipeline=True),
    StageSpec("judge", "recipes.judge", "score every candidate on every principle with the judge",
              input_stages=("generate",), config_keys=("judge", "principles", "device"), uses_rubric=True,
              in_pipeline=True),
    StageSpec("probes", "recipes.probes", "does the judge see each principle? contrastive probe detection rates",
              input_paths=("probes.path",), config_keys=("judge", "principles", "probes", "device", "seed"),
              uses_rubric=True, in_pipeline=True),
    StageSpec("pairs", "recipes.pairs", "weighted chosen/rejected pairs per split from the judge scores",
              input_stages=("generate", "judge"), input_paths=("pairs.human.sources[*].path",),
              config_keys=("pairs", "principles", "seed"), uses_rubric=True, in_pipeline=True),
    StageSpec("reward", "recipes.reward", "train and export the reward model on the train pairs",
              input_stages=("pairs",), config_keys=("model", "reward", "seed"), in_pipeline=True,
              objective="rm_accuracy"),
    StageSpec("reward_eval", "recipes.reward_eval",
              "reward-model accuracy by principle, topic, length; baselines; CounselChat",
              input_stages=("pairs", "reward"), input_paths=("reward_eval.counselchat",),
              config_keys=("model", "reward_eval", "principles", "seed"), uses_rubric=True, command="reward-eval",
              in_pipeline=True, runs_when=_reward_eval_configured),
    StageSpec("dpo", "recipes.dpo", "align the policy with DPO on the train pairs",
              input_stages=("pairs",), config_keys=("model", "dpo", "seed"), in_pipeline=True,
              objective="eval_reward_margin"),
    StageSpec("evaluate", "recipes.evaluate", "win rate, red-flag suite and release gate; export the checkpoint",
              # calibrate and probes: the card carries the judge's figures; sft too when it is a reference
              # (recipes/evaluate.py inputs: only then, so other runs keep their fingerprints)
              input_stages=("generate", "calibrate", "probes", "reward", "dpo"),
              input_paths=("evaluate.redflags", "evaluate.reference", "evaluate.extra_references[*]"),
              config_keys=("model", "judge", "evaluate", "principles", "device", "seed"), uses_rubric=True,
              in_pipeline=True, objective="win_rate"),
    StageSpec("report", "recipes.report", "metrics.json, report.md, report.html and plots from every manifest",
              input_stages=("generate", "calibrate", "judge", "probes", "pairs", "reward", "dpo", "evaluate"),
              in_pipeline=True),
    StageSpec("grpo", "recipes.grpo", "online RLHF with TRL GRPOTrainer against the trained reward model",
              input_stages=("generate", "reward"), config_keys=("model", "grpo", "seed"),
              objective="reward_last"),
    StageSpec("rloo", "recipes.rloo", "online RLHF with TRL RLOOTrainer against the trained reward model",
              input_stages=("generate", "reward"), config_keys=("model", "rloo", "seed"),
              objective="reward_last"),
    StageSpec("kto", "recipes.kto", "KTO on unpaired human signal (top-voted vs unvoted CounselChat answers), LoRA",
              input_paths=("kto.data.source",), config_keys=("model", "kto", "seed")),
    StageSpec("agreement", "recipes.agreement", "judge accuracy on human preference pairs (CounselChat) vs length",
              input_paths=("agreement.source",), config_keys=("agreement", "judge", "principles", "device", "seed"),
              uses_rubric=True),
    StageSpec("simulate", "recipes.simulate_clients", "client prompts from persona x topic x stage x risk, deduped",
              input_paths=("simulate.personas",), config_keys=("simulate", "model", "seed", "device"),
              command="simulate-clients"),
)

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in _SPECS}


def stage_spec(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"stage {name!r} is not declared in recipes/stages.py; add a StageSpec for it") from None


def pipeline_stages(cfg: DictConfig | None = None) -> list[StageSpec]:
    """The stages `counsel-align pipeline` runs, in order; with ``cfg``, only those this configuration runs."""
    return [spec for spec in _SPECS if spec.in_pipeline
            and (cfg is None or spec.runs_when is None or spec.runs_when(cfg))]


def pipeline_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in pipeline_stages())


def stage_order() -> tuple[str, ...]:
    """Every declared stage: pipeline stages first, in run order (for tables and reports)."""
    return pipeline_names() + tuple(spec.name for spec in _SPECS if not spec.in_pipeline)


def upstream(name: str) -> tuple[str, ...]:
    """Every stage whose outputs ``name`` depends on, directly or not, in registry order."""
    seen: set[str] = set()
    todo = list(stage_spec(name).input_stages)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(stage_spec(current).input_stages)
    return tuple(spec.name for spec in _SPECS if spec.name in seen)


def stages_of_command(command: str) -> list[StageSpec]:
    """The stages a CLI command will run (the pipeline: all of its stages; a stage: itself; others: none)."""
    if command == "pipeline":
        return pipeline_stages()
    return [spec for spec in _SPECS if command in (spec.name, spec.cli_name)]


def sweep_objectives() -> list[tuple[str, str]]:
    """(stage, objective metric) of every stage that has one, latest first: a sweep point is scored by the objective
    of the last such stage it finished (`counsel-align runs` and the report's sweep section)."""
    return [(name, STAGES[name].objective) for name in reversed(stage_order()) if STAGES[name].objective]
