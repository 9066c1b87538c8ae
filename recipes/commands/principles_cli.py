"""`counsel-align principles validate|show|diff|probe`: the rubric workflow for researchers.

validate  checks rubric files; each problem names the file and the field; warns about principles without probes.
show      prints the exact prompts the local and the remote judge send for one example reply.
diff      lists changed/added/removed principles between two rubric files, which cached judge answers they
          invalidate, and which finished stage outputs under an outputs folder become stale.
probe     runs the configured judge on the contrastive probes (data/probes) for one or two rubric files: per
          principle, how often it scores the intact reply above the broken one, beside length-only and random.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from recipes._entry import PROJECT_ROOT, handle_errors, project_path
from recipes.stages import stage_order
from rewards.artifacts import read_jsonl, read_manifest
from rewards.errors import UserError
from rewards.judges.base import JudgeItem, pairwise_messages, rubric_system_prompt, score_messages
from rewards.judges.local import CHOICE_PREFIX, SCORE_PREFIX
from rewards.judges.openai_compatible import (
    PAIRWISE_SCHEMA,
    PROMPT_FIELDS,
    json_pairwise_messages,
    json_score_messages,
    principle_hash,
    request_body,
    scores_schema,
)
from rewards.judges.probes import format_table, load_probes, missing_principles, plot_detection
from rewards.log import get_logger
from rewards.rubric import Principle, Rubric, load_rubric

log = get_logger(__name__)

DEFAULT_RUBRIC = PROJECT_ROOT / "principles" / "psychocounsel.yaml"
DEFAULT_PROBES = PROJECT_ROOT / "data" / "probes"
EXAMPLE = JudgeItem("I haven't slept properly in weeks and I keep snapping at my kids.",
                    "That sounds exhausting. What usually keeps you awake at night?")
STAGE_ORDER = stage_order()


# -- validate ---------------------------------------------------------------------------------------
def validate(paths: list[str], probes: str | None = None) -> int:
    by_principle = _probes_for_validate(probes)
    for path in paths or [str(DEFAULT_RUBRIC)]:
        rubric = load_rubric(project_path(path))
        if not any(p.weight > 0 for p in rubric.principles):
            raise UserError(f"{path}: principles.*.weight: every weight is 0; give at least one principle a weight > 0")
        safety = ", ".join(rubric.safety_ids) or "none"
        print(f"ok: {path}: rubric {rubric.name!r} v{rubric.version}, {len(rubric.principles)} principles "
              f"({', '.join(rubric.ids)}), safety: {safety}, content hash {rubric.content_hash()[:12]}")
        untested = missing_principles(by_principle, rubric.ids) if by_principle is not None else []
        if untested:
            print(f"warning: {path}: no probes for {', '.join(untested)} in {probes or DEFAULT_PROBES}; "
                  "`principles probe` cannot tell whether the judge sees them (write <principle id>.jsonl there, "
                  "see data/probes/README.md)")
    return 0


def _probes_for_validate(folder: str | None) -> dict | None:
    """The probes to check rubrics against: the given folder (must exist), else the project's if present."""
    if folder is not None:
        return load_probes(project_path(folder))
    return load_probes(DEFAULT_PROBES) if DEFAULT_PROBES.is_dir() else None


# -- show -------------------------------------------------------------------------------------------
def _print_messages(messages: list[dict], answer_prefix: str | None = None) -> None:
    for message in messages:
        print(f"--- {message['role']} ---\n{message['content']}")
    if answer_prefix is not None:
        print(f"--- assistant (the judge reads the next token's probabilities) ---\n{answer_prefix}")


def show(path: str, backend: str, principle: str | None, client: str | None, reply: str | None, model: str,
         render: str | None) -> int:
    rubric = load_rubric(project_path(path))
    item = JudgeItem(client or EXAMPLE.client, reply or EXAMPLE.response)
    principles = [_principle(rubric, principle)] if principle else list(rubric.principles)
    if backend in ("local", "both"):
        print(f"===== local judge: one prompt per principle ({len(principles)}), answer prefix {SCORE_PREFIX!r}, "
              "score = expectation over the probabilities of 1..5 =====")
        for p in principles:
            print(f"\n##### principle {p.id}")
            messages = score_messages(rubric, item, p)
            if render:
                print(_rendered(render, messages) + SCORE_PREFIX)
            else:
                _print_messages(messages, SCORE_PREFIX)
        print(f"\n##### pairwise comparison (asked in both orders; answer prefix {CHOICE_PREFIX!r})")
        _print_messages(pairwise_messages(rubric, item.client, item.response, "<reply B>"), CHOICE_PREFIX)
    if backend in ("openai_compatible", "both"):
        print("\n===== remote judge (openai_compatible): one request per reply scoring every principle; "
              "POST <base_url>/chat/completions with this body =====")
        messages = json_score_messages(rubric_system_prompt(rubric), item, principles)
        print(json.dumps(request_body(model, messages, scores_schema([p.id for p in principles])), indent=2,
                         ensure_ascii=False))
        print("\n##### pairwise comparison request body (asked in both orders)")
        pairwise = json_pairwise_messages(rubric, item.client, item.response, "<reply B>")
        print(json.dumps(request_body(model, pairwise, PAIRWISE_SCHEMA), indent=2, ensure_ascii=False))
    return 0


def _principle(rubric: Rubric, principle_id: str) -> Principle:
    try:
        return rubric.get(principle_id)
    except KeyError:
        raise UserError(f"--principle: no principle {principle_id!r}; the rubric has {rubric.ids}") from None


def _rendered(model: str, messages: list[dict]) -> str:
    from rewards.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# -- diff -------------------------------------------------------------------------------------------
def principle_changes(old: Rubric, new: Rubric) -> dict[str, dict]:
    """Per principle id: status (added, removed, changed, unchanged) and the fields that changed."""
    old_by_id = {p.id: p for p in old.principles}
    new_by_id = {p.id: p for p in new.principles}
    changes: dict[str, dict] = {}
    for pid in [*old_by_id, *(i for i in new_by_id if i not in old_by_id)]:
        before, after = old_by_id.get(pid), new_by_id.get(pid)
        if before is None or after is None:
            changes[pid] = {"status": "added" if before is None else "removed", "fields": []}
            continue
        fields = _changed_fields(before.model_dump(mode="json"), after.model_dump(mode="json"))
        changes[pid] = {"status": "changed" if fields else "unchanged", "fields": fields,
                        "judge_sees_change": principle_hash(before) != principle_hash(after)}
    return changes


def _changed_fields(before: dict, after: dict) -> list[str]:
    fields = []
    for key in dict.fromkeys([*before, *after]):
        if isinstance(before.get(key), dict) and isinstance(after.get(key), dict):
            fields += [f"{key}.{sub}" for sub in _changed_fields(before[key], after[key])]
        elif before.get(key) != after.get(key):
            fields.append(key)
    return fields


def stale_stages(outputs: Path, old_hash: str) -> list[Path]:
    """Finished stages built with the old rubric, and every stage of the same run fed by one of them."""
    stale: list[Path] = []
    for run_dir in sorted(p for p in outputs.iterdir() if p.is_dir() and not p.name.startswith(".")):
        manifests = {d.name: m for d in sorted(run_dir.iterdir()) if d.is_dir() and (m := read_manifest(d))}
        stale_names: set[str] = set()
        for name in sorted(manifests, key=lambda n: STAGE_ORDER.index(n) if n in STAGE_ORDER else len(STAGE_ORDER)):
            manifest = manifests[name]
            if manifest.get("rubric_sha256") == old_hash or set(manifest.get("inputs") or {}) & stale_names:
                stale_names.add(name)
                stale.append(run_dir / name)
    return stale


def cached_judgments(run_dir: Path, old: Rubric, principle_ids: list[str]) -> dict[str, int] | None:
    """For a finished remote-judge stage: how many of its cached answers belong to each listed principle."""
    manifest = read_manifest(run_dir / "judge")
    judge_cfg = (manifest or {}).get("config", {}).get("judge", {})
    if judge_cfg.get("backend") != "openai_compatible" or not judge_cfg.get("cache_path"):
        return None
    cache_path = project_path(judge_cfg["cache_path"])
    if not cache_path.exists():
        return None
    import os

    from rewards.judges import JudgmentCache, OpenAICompatibleJudge

    prompts = {p["id"]: p["text"] for p in read_jsonl(run_dir / "generate" / "prompts.jsonl")}
    judged = read_jsonl(run_dir / "judge" / "judged.jsonl")
    os.environ.setdefault("COUNSEL_ALIGN_DIFF_NO_KEY", "unused")  # keys are computed here, no request is made
    judge = OpenAICompatibleJudge(old, "http://unused", judge_cfg["model"], api_key_env="COUNSEL_ALIGN_DIFF_NO_KEY")
    cache = JudgmentCache(cache_path)
    try:
        keys = {pid: [judge.principle_key(JudgeItem(prompts[r["prompt_id"]], r["response"]), pid) for r in judged]
                for pid in principle_ids if pid in old.ids}
        return {pid: len(cache.get_many(k)) for pid, k in keys.items()}
    finally:
        cache.close()


def diff(old_path: str, new_path: str, outputs: str | None) -> int:
    old, new = load_rubric(project_path(old_path)), load_rubric(project_path(new_path))
    changes = principle_changes(old, new)
    print(f"rubric {old.name} v{old.version} ({old_path}) -> {new.name} v{new.version} ({new_path})")
    if old.content_hash() == new.content_hash():
        print("no change: cached judgments and stage outputs stay valid")
        return 0
    for status in ("changed", "added", "removed"):
        for pid, change in changes.items():
            if change["status"] == status:
                fields = f" ({', '.join(change['fields'])})" if change["fields"] else ""
                print(f"{status:>8}: {pid}{fields}")
    rejudge = [pid for pid, c in changes.items() if c["status"] == "added" or c.get("judge_sees_change")]
    kept = [pid for pid, c in changes.items() if c["status"] in ("changed", "unchanged") and pid not in rejudge]
    dropped = [pid for pid, c in changes.items() if c["status"] == "removed"]
    print(f"judge answers to ask again (cache is per principle: {'/'.join(PROMPT_FIELDS)}): "
          f"{', '.join(rejudge) or 'none'}")
    print(f"cached judge answers still valid: {', '.join(kept) or 'none'}")
    if dropped:
        print(f"cached judge answers no longer used: {', '.join(dropped)}")
    if outputs:
        _report_outputs(project_path(outputs), old, rejudge + dropped)
    return 0


def _report_outputs(outputs: Path, old: Rubric, stale_principles: list[str]) -> None:
    if not outputs.is_dir():
        raise UserError(f"--outputs: {outputs} is not a folder; give the output_root of your runs (e.g. outputs)")
    stale = stale_stages(outputs, old.content_hash())
    print(f"stale stage outputs under {outputs} (built with the old rubric, or fed by one): {len(stale)}")
    for stage_dir in stale:
        print(f"  {stage_dir}")
    for run_dir in sorted({s.parent for s in stale if s.name == "judge"}):
        counts = cached_judgments(run_dir, old, stale_principles)
        if counts is not None:
            listed = ", ".join(f"{pid}: {n}" for pid, n in counts.items()) or "none"
            print(f"  cached answers of the changed/removed principles for {run_dir.name}/judge: {listed}")
    if stale:
        print("rerun `counsel-align pipeline principles.path=<new rubric>`: the remote judge asks only for the "
              "principles listed above; later stages rebuild")


# -- probe ------------------------------------------------------------------------------------------
def probe(rubric_paths: list[str], overrides: list[str], probes: str | None, out: str | None) -> int:
    """Measure the configured judge on the probes, once per rubric file; table, JSON and plot under ``out``."""
    from recipes._entry import compose_config
    from recipes.probes import measure, rubric_probes
    from rewards.artifacts import atomic_write_json, atomic_write_text, sha256_json

    # Every probe unless told otherwise: the quickstart's probes.limit_per_principle is sized for the pipeline's time.
    limit = [] if any(o.startswith("probes.limit_per_principle=") for o in overrides) else [
        "probes.limit_per_principle=null"]
    cfg = compose_config([*overrides, *limit, *([f"probes.path={probes}"] if probes else [])])
    out_dir = project_path(out) if out else project_path(cfg.output_root) / "principles_probe"
    summaries: dict[str, dict] = {}
    for path in rubric_paths or [str(cfg.principles.path)]:
        rubric = load_rubric(project_path(path))
        chosen = rubric_probes(cfg, rubric, path)
        # Judgments are journaled per rubric and judge, so a rerun or an added rubric judges only what is new.
        journal_dir = out_dir / "journals" / sha256_json(
            {"rubric": rubric.content_hash(), "judge": OmegaConf.to_container(cfg.judge, resolve=True),
             "device": cfg.device})[:16]
        log.info(f"principles probe: {path}: {len(chosen)} probes with judge {cfg.judge.backend} "
                 f"({cfg.judge.model})")
        summary, failures, _ = measure(cfg, rubric, chosen, journal_dir)
        if failures.items:
            log.info(f"principles probe: warning: the judge failed on {len(failures.items)} replies "
                     f"(first: {failures.items[0]['error']}); their probes are left out; rerun to retry")
        summaries[path if path not in summaries else f"{path} ({len(summaries) + 1})"] = summary
    table = format_table(summaries)
    atomic_write_json(out_dir / "probes.json", summaries)
    atomic_write_text(out_dir / "probes.md", "# Does the judge see each principle?\n\n" + table + "\n")
    plot_detection(summaries, out_dir / "probes.png")
    print(table)
    print(f"detection = intact reply scored above the broken one on the probe's principle (ties = 1/2); spill-over = "
          f"mean intact-minus-broken gap on the other principles. Written to {out_dir}/probes.md, probes.json, "
          "probes.png")
    return 0


# -- entry ------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="counsel-align principles", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check rubric files (default: principles/psychocounsel.yaml)")
    check.add_argument("paths", nargs="*")
    check.add_argument("--probes", help="probes folder to check the rubrics against (default: data/probes)")
    view = commands.add_parser("show", help="print the exact judge prompts for one example reply")
    view.add_argument("path", nargs="?", default=str(DEFAULT_RUBRIC))
    view.add_argument("--backend", choices=("local", "openai_compatible", "both"), default="both")
    view.add_argument("--principle", help="only this principle id")
    view.add_argument("--client", help="client message of the example (default: a built-in one)")
    view.add_argument("--reply", help="counselor reply of the example")
    view.add_argument("--model", default="gpt-4o-mini", help="model name in the remote request body")
    view.add_argument("--render", metavar="MODEL", help="local judge: render with this model's chat template")
    compare = commands.add_parser("diff", help="what changed between two rubric files and what becomes stale")
    compare.add_argument("old")
    compare.add_argument("new")
    compare.add_argument("--outputs", help="output_root to scan for stale stage outputs (e.g. outputs)")
    measure = commands.add_parser("probe", help="does the judge see each principle? run it on contrastive probes",
                                  description="counsel-align principles probe [RUBRIC ...] [--probes DIR] [--out DIR] "
                                  "[key=value ...]: arguments with '=' are config overrides (judge=..., "
                                  "principles.path=..., probes.limit_per_principle=...); one or two rubric files give "
                                  "one row per rubric per principle.")
    measure.add_argument("args", nargs="*", metavar="RUBRIC|key=value")
    measure.add_argument("--probes", help="folder of <principle id>.jsonl probes (default: probes.path, data/probes)")
    measure.add_argument("--out", help="output folder (default: <output_root>/principles_probe)")
    return root


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = parser()
    args, extra = root.parse_known_args(argv)
    if extra:  # `probe` takes rubric files and overrides before and after its options
        if args.command != "probe" or any(a.startswith("-") for a in extra):
            root.parse_args(argv)  # argparse's own message for what it does not know
        args.args += extra

    def action() -> int:
        if args.command == "validate":
            return validate(args.paths, args.probes)
        if args.command == "probe":
            return probe([a for a in args.args if "=" not in a], [a for a in args.args if "=" in a], args.probes,
                         args.out)
        if args.command == "show":
            return show(args.path, args.backend, args.principle, args.client, args.reply, args.model, args.render)
        return diff(args.old, args.new, args.outputs)

    return handle_errors(f"principles {args.command}", action)


if __name__ == "__main__":
    raise SystemExit(main())
