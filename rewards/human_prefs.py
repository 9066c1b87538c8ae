"""Human preference pairs: CounselChat (answers to one question ranked by upvotes) and any CSV/JSONL by column map.

Every pair is a plain dict: ``pair_id, prompt_id, prompt, chosen, rejected, topic, split, chosen_score,
rejected_score``. CounselChat is grouped by question link (its ``questionID`` is not a question key), exact
duplicate answers are dropped, and a question with any train row is train (so no val/test question leaks).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from rewards.errors import UserError

COUNSELCHAT_HUB_ID = "nbertagnolli/counsel-chat"
SPLIT_PRIORITY = ("train", "val", "test")
HELD_OUT_SPLITS = ("val", "test")  # never used for training


@dataclass(frozen=True)
class RankedColumns:
    """Columns of a table of scored answers ("ranked" format): pairs form within a group, by score.

    prompt: the client's message. response: one answer. score: its human score (e.g. upvotes).
    group: key of the question the answer belongs to (default: the prompt text).
    topic / split: optional columns copied to the pairs (missing: "unknown" / "train").
    """

    prompt: str = "questionText"
    response: str = "answerText"
    score: str = "upvotes"
    group: str | None = "questionLink"
    topic: str | None = "topic"
    split: str | None = "split"


@dataclass(frozen=True)
class PairColumns:
    """Columns of a table that already holds one pair per row ("pairs" format)."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    topic: str | None = None
    split: str | None = None


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:16]


def read_table(source: str | Path) -> list[dict]:
    """Rows of a CSV (real CSV parsing: fields may hold newlines), JSONL or JSON-list file, or of a hub dataset."""
    path = Path(source).expanduser()
    if not path.exists():
        if str(source).count("/") == 1 and not str(source).startswith((".", "/", "~")):
            return _read_hub(str(source))
        raise UserError(f"{source}: file not found; give a CSV/JSONL path or a hub dataset id like "
                        f"{COUNSELCHAT_HUB_ID}")
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    if path.suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".json":
                return list(json.loads(text))
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    raise UserError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .jsonl or .json")


def _read_hub(hub_id: str) -> list[dict]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id)
    except Exception as exc:  # noqa: BLE001 - any hub failure is the user's to fix (offline, wrong id)
        raise UserError(f"{hub_id}: cannot load this hub dataset ({type(exc).__name__}); check the id and the "
                        "network, or download the CSV and give its path") from None
    return [dict(row) for name in dataset for row in dataset[name]]


def require_columns(rows: list[dict], columns: dict[str, str | None], source: str, config_key: str) -> None:
    """One-line error naming the first missing column, the config key that names it and the available ones."""
    available = list(rows[0]) if rows else []
    for key, column in columns.items():
        if column and column not in available:
            raise UserError(f"{source}: column {column!r} ({config_key}.{key}) not found; available columns: "
                            f"{available}; set {config_key}.{key}=<column>")


def _score(value: object, source: str, column: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{source}: column {column!r} holds {value!r}, not a number") from None


def group_answers(rows: list[dict], columns: RankedColumns, source: str = "<table>",
                  config_key: str = "agreement.columns") -> dict[str, dict]:
    """Answers grouped by question key: ``{group: {"prompt", "topic", "split", "answers": [{response, score}]}}``.

    Exact duplicate answers of a question are dropped, and a question with rows in several splits belongs to the
    earliest of train, val, test, so no val/test question leaks into training (CounselChat has both defects).
    """
    require_columns(rows, {k: getattr(columns, k) for k in ("prompt", "response", "score", "group", "topic",
                                                            "split")}, source, config_key)
    groups: dict[str, dict] = {}
    splits: dict[str, set[str]] = defaultdict(set)
    seen: set[tuple[str, str]] = set()
    for row in rows:
        prompt, response = str(row[columns.prompt] or "").strip(), str(row[columns.response] or "").strip()
        if not prompt or not response:
            continue
        group = str(row[columns.group]) if columns.group else prompt
        splits[group].add(str(row[columns.split]) if columns.split and row[columns.split] else "train")
        if (group, response) in seen:  # the same answer listed twice (CounselChat repeats 120 answers)
            continue
        seen.add((group, response))
        entry = groups.setdefault(group, {
            "prompt": prompt, "answers": [],
            "topic": str(row[columns.topic]) if columns.topic and row[columns.topic] else "unknown"})
        entry["answers"].append({"response": response,
                                 "score": _score(row[columns.score], source, columns.score)})
    for group, entry in groups.items():
        entry["split"] = min(splits[group], key=_split_rank)
        entry["prompt_id"] = f"h-{_digest(group)}"
    return dict(sorted(groups.items()))


def pairs_from_ranked(rows: list[dict], columns: RankedColumns, source: str = "<table>",
                      min_score_gap: float = 1.0, config_key: str = "agreement.columns") -> list[dict]:
    """Every two answers to the same question whose scores differ by at least ``min_score_gap`` give a pair."""
    pairs = []
    for group, question in group_answers(rows, columns, source, config_key).items():
        for first, second in itertools.combinations(question["answers"], 2):
            if abs(first["score"] - second["score"]) < min_score_gap:
                continue
            chosen, rejected = (first, second) if first["score"] > second["score"] else (second, first)
            pairs.append({
                "pair_id": _digest(group, chosen["response"], rejected["response"]),
                "prompt_id": question["prompt_id"], "prompt": question["prompt"], "chosen": chosen["response"],
                "rejected": rejected["response"], "topic": question["topic"], "split": question["split"],
                "chosen_score": chosen["score"], "rejected_score": rejected["score"],
            })
    return pairs


def _split_rank(split: str) -> int:
    """A question with rows in several splits belongs to the earliest of train, val, test (no held-out leak)."""
    return SPLIT_PRIORITY.index(split) if split in SPLIT_PRIORITY else len(SPLIT_PRIORITY)


def pairs_from_paired(rows: list[dict], columns: PairColumns, source: str = "<table>",
                      config_key: str = "agreement.columns") -> list[dict]:
    """One pair per row from prompt/chosen/rejected columns."""
    require_columns(rows, {k: getattr(columns, k) for k in ("prompt", "chosen", "rejected", "topic", "split")},
                    source, config_key)
    pairs = []
    for row in rows:
        prompt, chosen, rejected = (str(row[c] or "").strip() for c in (columns.prompt, columns.chosen,
                                                                         columns.rejected))
        if prompt and chosen and rejected and chosen != rejected:
            pairs.append({
                "pair_id": _digest(prompt, chosen, rejected), "prompt_id": f"h-{_digest(prompt)}", "prompt": prompt,
                "chosen": chosen, "rejected": rejected,
                "topic": str(row[columns.topic]) if columns.topic and row[columns.topic] else "unknown",
                "split": str(row[columns.split]) if columns.split and row[columns.split] else "train",
                "chosen_score": None, "rejected_score": None,
            })
    return pairs


def load_human_pairs(source: str | Path, fmt: str, columns: dict[str, str | None] | None = None,
                     min_score_gap: float = 1.0, config_key: str = "agreement.columns") -> list[dict]:
    """Pairs from a file or hub id; ``fmt`` is "ranked" (scored answers) or "pairs" (chosen/rejected columns)."""
    columns = dict(columns or {})
    rows = read_table(source)
    if not rows:
        raise UserError(f"{source}: no rows")
    if fmt == "ranked":
        known = RankedColumns.__dataclass_fields__
        _check_keys(columns, known, config_key, fmt)
        return pairs_from_ranked(rows, RankedColumns(**{k: v for k, v in columns.items() if k in known}), str(source),
                                 min_score_gap, config_key)
    if fmt == "pairs":
        known = PairColumns.__dataclass_fields__
        _check_keys(columns, known, config_key, fmt)
        return pairs_from_paired(rows, PairColumns(**{k: v for k, v in columns.items() if k in known}), str(source),
                                 config_key)
    raise UserError(f"agreement.format: unknown format {fmt!r}; use 'ranked' (scored answers) or 'pairs'")


def _check_keys(columns: dict, known: Iterable[str], config_key: str, fmt: str) -> None:
    """Keys of the other format are allowed when unset, so one config block can serve both formats."""
    unknown = [k for k, v in columns.items() if k not in known and v]
    if unknown:
        raise UserError(f"{config_key}.{unknown[0]}: not a column of format {fmt!r}; its columns: {list(known)}")


def load_counselchat(source: str | Path = COUNSELCHAT_HUB_ID, min_score_gap: float = 1.0) -> list[dict]:
    """CounselChat preference pairs with the default column mapping."""
    return load_human_pairs(source, "ranked", asdict(RankedColumns()), min_score_gap)


def sample_pairs(pairs: list[dict], n: int | None, split: str = "all", max_per_prompt: int | None = None,
                 seed: int = 0) -> list[dict]:
    """A seeded subset: of one split (or "all"), at most ``max_per_prompt`` per question, then ``n`` in all."""
    if split != "all":
        pairs = [p for p in pairs if p["split"] == split]
    rng = random.Random(seed)
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for pair in sorted(pairs, key=lambda p: p["pair_id"]):
        by_prompt[pair["prompt_id"]].append(pair)
    kept = []
    for prompt_id in sorted(by_prompt):
        group = by_prompt[prompt_id]
        rng.shuffle(group)
        kept.extend(group[:max_per_prompt] if max_per_prompt else group)
    rng.shuffle(kept)
    return kept[:n] if n else kept


@dataclass(frozen=True)
class HumanSource:
    """One source of human pairs mixed into the pairs stage's train split (``pairs.human.sources[*]``).

    path: a CSV/JSONL/JSON file, a CounselChat folder, or a hub id. format: "ranked" or "pairs" (as ``agreement``).
    split: the source's split whose pairs are used (val/test are refused: held-out data are never trained on).
    weight: how much the source counts, applied by sampling (TRL's DPO has no per-example weight): each pair is
    repeated int(weight) times and a seeded fraction weight - int(weight) of the pairs once more (0.5: half of them).
    max_pairs / max_pairs_per_question: seeded caps applied before the weight.
    """

    path: str
    name: str = ""
    format: str = "ranked"
    columns: dict | None = None
    split: str = "train"
    weight: float = 1.0
    max_pairs: int | None = None
    max_pairs_per_question: int | None = None
    min_score_gap: float = 1.0



def parse_human_sources(specs: list[dict], config_key: str = "pairs.human.sources") -> list[HumanSource]:
    """Checked sources with unique names (default: the file stem or hub id); one-line errors name the entry."""
    known = HumanSource.__dataclass_fields__
    sources, names = [], set()
    for index, spec in enumerate(specs or []):
        key = f"{config_key}[{index}]"
        spec = dict(spec or {})
        unknown = sorted(set(spec) - set(known))
        if unknown or not spec.get("path"):
            raise UserError(f"{key}: {'unknown key ' + repr(unknown[0]) if unknown else 'no path'}; "
                            f"each source takes {list(known)} and needs a path")
        spec["name"] = spec.get("name") or Path(str(spec["path"])).stem or str(spec["path"])
        source = HumanSource(**{k: v for k, v in spec.items() if v is not None})
        if source.split in HELD_OUT_SPLITS:
            raise UserError(f"{key}.split={source.split}: held-out splits are never used for training; use train")
        if not isinstance(source.weight, int | float) or not source.weight >= 0:
            raise UserError(f"{key}.weight={source.weight}: a weight is a number >= 0")
        if source.name in names:
            raise UserError(f"{key}.name={source.name}: two sources with one name; give each a distinct name")
        names.add(source.name)
        sources.append(source)
    return sources


def weighted_sample(pairs: list[dict], weight: float, seed: int = 0) -> list[dict]:
    """The pairs repeated int(weight) times plus a seeded ``weight - int(weight)`` fraction of them once more."""
    whole, fraction = int(weight), weight - int(weight)
    extra = random.Random(seed).sample(pairs, round(len(pairs) * fraction)) if fraction else []
    return [*(pairs * whole), *extra]


def load_source_pairs(source: HumanSource, table: str | Path, seed: int = 0,
                      config_key: str = "pairs.human.sources") -> tuple[list[dict], dict]:
    """The source's pairs of its split, capped and weighted, and what was taken (for the manifest)."""
    pairs = load_human_pairs(table, source.format, source.columns, source.min_score_gap, f"{config_key}.columns")
    available = [p for p in pairs if p["split"] == source.split]
    sampled = sample_pairs(available, source.max_pairs, source.split, source.max_pairs_per_question, seed)
    weighted = weighted_sample(sampled, float(source.weight), seed)
    info = {"name": source.name, "path": str(source.path), "format": source.format, "split": source.split,
            "weight": float(source.weight), "n_available": len(available), "n_sampled": len(sampled),
            "n_rows": len(weighted)}
    return weighted, info
