"""`counsel-align preview`: show what DPO training will see — chat template, loss mask, tokens, truncation.

Reads this run's pairs (or `preview.pairs=<dataset dir | .jsonl>`), tokenizes them with the model's tokenizer the
way TRL's DPOTrainer does, prints a few rendered samples with the trained tokens marked ⟦…⟧, then the counts.
Loads no model weights.
"""

from __future__ import annotations

import json

from omegaconf import DictConfig

from recipes._entry import entry, project_path, run_dir_of
from rewards.artifacts import read_jsonl, read_manifest
from rewards.errors import UserError
from rewards.models import load_tokenizer
from rewards.training.preview import preview_report, render_sample


def load_rows(cfg: DictConfig) -> list[dict]:
    source = cfg.preview.pairs
    if source:
        path = project_path(source)
        if path.suffix == ".jsonl":
            return read_jsonl(path)
        dataset_dir = path
    else:
        stage = run_dir_of(cfg) / "pairs"
        if read_manifest(stage) is None:
            raise UserError(f"{stage}: no finished pairs; run `counsel-align pairs run={cfg.run}` or set preview.pairs")
        dataset_dir = stage / "dataset"
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(dataset_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"preview.pairs: cannot read {dataset_dir} ({exc}); give a pairs dataset dir or .jsonl"
                        ) from None
    split = cfg.preview.split
    if hasattr(dataset, "keys"):
        if split not in dataset:
            raise UserError(f"preview.split: {split!r} not in {sorted(dataset.keys())}")
        dataset = dataset[split]
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise UserError(f"{dataset_dir}: missing column(s) {sorted(missing)}; pairs need prompt, chosen, rejected")
    return list(dataset)


def run(cfg: DictConfig) -> dict:
    section = cfg.preview.section
    section = {"train": "dpo", "reward_train": "reward"}.get(section, section)  # old spellings, one release
    if section not in ("dpo", "reward"):
        raise UserError(f"preview.section: {section!r} is not one of dpo, reward")
    max_length = int(cfg[section].max_length)
    rows = load_rows(cfg)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    for index, row in enumerate(rows[: cfg.preview.samples]):
        print(render_sample(tokenizer, row, max_length, index), end="\n\n")
    report = preview_report(tokenizer, rows, max_length).as_dict()
    print(f"pairs {report['n_pairs']} | truncated at {section}.max_length={max_length}: {report['n_truncated']} "
          f"| dropped (prompt fills max_length): {report['n_dropped']} | EOS lost to truncation: "
          f"{report['n_eos_lost']} | missing EOS: {report['n_missing_eos']} | repeated BOS: "
          f"{report['n_repeated_bos']} | prompt/completion boundary mismatches: {report['n_boundary_mismatch']}")
    print(json.dumps({k: report[k] for k in ("prompt_tokens", "chosen_tokens", "rejected_tokens")}))
    return report


main = entry("preview", run)

if __name__ == "__main__":
    raise SystemExit(main())
