"""Contrastive probes: does the judge see each principle of a rubric?

A probe is two replies to one client message that differ only in what one principle asks for. A judge that
sees the principle scores the intact reply higher on that principle (detection) and leaves the other
principles roughly where they were (small spill-over). Probes live in ``<folder>/<principle id>.jsonl``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rewards.artifacts import Journal, jsonl_rows
from rewards.errors import UserError
from rewards.evaluation.winrate import bootstrap_interval
from rewards.judges.base import RANDOM_BASELINE, JudgeItem, PrincipleScores
from rewards.judges.cache import judgment_key
from rewards.reporting.html import fmt

REQUIRED_FIELDS = ("id", "principle", "client", "intact", "broken", "change")
OPTIONAL_FIELDS = ("words_intact", "words_broken")
SIDES = ("intact", "broken")


@dataclass(frozen=True)
class Probe:
    """One contrastive pair: ``broken`` is ``intact`` with only ``principle`` violated (``change`` says how)."""

    id: str
    principle: str
    client: str
    intact: str
    broken: str
    change: str

    @property
    def words_intact(self) -> int:
        return word_count(self.intact)

    @property
    def words_broken(self) -> int:
        return word_count(self.broken)

    def key(self, side: str) -> str:
        """Journal key of one side's judgment: by content, so a reply shared by several probes is judged once."""
        return judgment_key(self.client, getattr(self, side))

    @property
    def pair_key(self) -> str:
        """Journal key of the pairwise comparison: by content, so an edited probe is asked again."""
        return judgment_key(self.client, self.intact, self.broken)


def word_count(text: str) -> int:
    return len(text.split())


# -- loading ----------------------------------------------------------------------------------------
def parse_probe(row: object, where: str, expected_principle: str) -> Probe:
    """One validated record; ``where`` is ``file:line`` for the one-line error."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: each line must be a JSON object with fields {', '.join(REQUIRED_FIELDS)}")
    unknown = sorted(set(row) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}")
    for name in REQUIRED_FIELDS:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise UserError(f"{where}: field '{name}' must be a non-empty string")
    if row["principle"] != expected_principle:
        raise UserError(f"{where}: principle {row['principle']!r} does not match the file name; move the line to "
                        f"{row['principle']}.jsonl or set principle to {expected_principle!r}")
    if row["intact"].strip() == row["broken"].strip():
        raise UserError(f"{where}: intact and broken replies are identical; the broken one must break "
                        f"{expected_principle}")
    for side in SIDES:
        stated, actual = row.get(f"words_{side}"), word_count(row[side])
        if stated is not None and stated != actual:
            raise UserError(f"{where}: words_{side} is {stated} but the {side} reply has {actual} words "
                            "(whitespace-separated); correct it or drop the field")
    return Probe(**{name: row[name] for name in REQUIRED_FIELDS})


def read_probe_file(path: Path) -> list[Probe]:
    return [parse_probe(row, f"{path}:{number}", path.stem) for number, row in jsonl_rows(path)]


def load_probes(folder: str | Path) -> dict[str, list[Probe]]:
    """Every ``<principle id>.jsonl`` in ``folder``, validated; probe ids must be unique across files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"probes.path: {folder} is not a folder; point it at a folder of <principle id>.jsonl files "
                        "(the project's are in data/probes)")
    by_principle: dict[str, list[Probe]] = {}
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.jsonl")):
        probes = read_probe_file(path)
        for probe in probes:
            if probe.id in seen:
                raise UserError(f"{path}: probe id {probe.id!r} also appears in {seen[probe.id]}; make ids unique")
            seen[probe.id] = path
        if probes:
            by_principle[path.stem] = probes
    if not by_principle:
        raise UserError(f"probes.path: no probes in {folder}; add <principle id>.jsonl files (see data/probes)")
    return by_principle


def select_probes(by_principle: dict[str, list[Probe]], principle_ids: Iterable[str],
                  limit_per_principle: int | None = None) -> list[Probe]:
    """The probes of the rubric's principles, in rubric order, at most ``limit_per_principle`` each (file order)."""
    if limit_per_principle is not None and limit_per_principle < 1:
        raise UserError(f"probes.limit_per_principle: {limit_per_principle} must be at least 1, or null for all")
    chosen = []
    for pid in principle_ids:
        chosen += by_principle.get(pid, [])[:limit_per_principle]
    return chosen


def missing_principles(by_principle: dict[str, list[Probe]], principle_ids: Iterable[str]) -> list[str]:
    """Principles of a rubric that no probe tests."""
    return [pid for pid in principle_ids if not by_principle.get(pid)]


# -- judging ----------------------------------------------------------------------------------------
def distinct_replies(probes: list[Probe]) -> int:
    """How many replies judging these probes scores (an intact reply shared by several probes counts once)."""
    return len({probe.key(side) for probe in probes for side in SIDES})


def score_probes(judge, probes: list[Probe], journal: Journal, batch_size: int = 16,
                 on_batch: Callable[[int, int], None] | None = None) -> list[dict]:
    """Score both replies of every probe on every principle; finished ones go to ``journal`` (``key``, ``scores``).

    Returns the items the judge failed on (remote judges report failures per item), each with its ``error``.
    """
    from rewards.judges.batching import score_batch

    done = journal.done()
    todo = list({probe.key(side): (probe, side) for probe in probes for side in SIDES
                 if probe.key(side) not in done}.values())
    failures = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        results = score_batch(judge, [JudgeItem(probe.client, getattr(probe, side)) for probe, side in batch])
        journal.append_many({"key": probe.key(side), "scores": result.scores}
                            for (probe, side), result in zip(batch, results, strict=True) if result.scores)
        failures += [{"key": probe.key(side), "error": result.error or "unknown failure"}
                     for (probe, side), result in zip(batch, results, strict=True) if not result.scores]
        if on_batch is not None:
            on_batch(start + len(batch), len(todo))
    return failures


def compare_probes(judge, probes: list[Probe], journal: Journal, batch_size: int = 16) -> None:
    """Pairwise: each probe asked in both orders (intact as reply A, then as reply B); journaled as ``as_a``/``as_b``
    (the probability that the intact reply is better in each order)."""
    from rewards.evaluation.compare import judged_comparisons

    done = journal.done()
    todo = list({p.pair_key: p for p in probes if p.pair_key not in done}.values())
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        outcomes = judged_comparisons(judge, [(p.client, p.intact, p.broken) for p in batch])
        journal.append_many({"key": p.pair_key, "as_a": o.p_first_as_a, "as_b": o.p_first_as_b}
                            for p, o in zip(batch, outcomes, strict=True))


def pairwise_detections(probes: list[Probe], journal: Journal) -> dict[str, float]:
    """Probe id -> pairwise detection (``pairwise_value``) for every probe compared in ``journal``."""
    done = journal.done()
    return {p.id: pairwise_value(done[p.pair_key]["as_a"], done[p.pair_key]["as_b"])
            for p in probes if p.pair_key in done}


# -- measuring --------------------------------------------------------------------------------------
def detection_value(intact: float, broken: float) -> float:
    """1 when the intact reply scores higher, 0.5 on a tie, 0 when the broken one does."""
    return 1.0 if intact > broken else 0.5 if intact == broken else 0.0


def pairwise_value(as_a: float, as_b: float) -> float:
    """Detection from both presentation orders: intact preferred in both = 1, in neither = 0, split = 0.5.

    A judge that always prefers the first reply prefers intact as A and broken as A: a split, so 0.5.
    """
    if as_a > 0.5 and as_b > 0.5:
        return 1.0
    if as_a < 0.5 and as_b < 0.5:
        return 0.0
    return 0.5


def length_value(probe: Probe) -> float:
    """The length-only baseline: the longer reply is taken as the intact one."""
    return detection_value(probe.words_intact, probe.words_broken)


def _rate(values: list[float], n_resamples: int, confidence: float, seed: int) -> dict:
    low, high = bootstrap_interval(values, n_resamples, confidence, seed)
    return {"rate": round(statistics.fmean(values), 4), "ci_low": low, "ci_high": high}


def summarize_principle(probes: list[Probe], scores: dict[str, PrincipleScores], principle_ids: list[str],
                        pairwise: dict[str, float] | None = None, n_resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> dict | None:
    """Detection rate with its bootstrap interval, mean gap and spill-over for the probes of one principle.

    Only probes whose both replies were scored count; None when there are none. ``gap`` is intact minus broken on
    the target principle; ``spillover`` the same gap averaged over the rubric's other principles.
    """
    scored = [p for p in probes if p.key("intact") in scores and p.key("broken") in scores]
    if not scored:
        return None
    target = scored[0].principle
    others = [pid for pid in principle_ids if pid != target]
    detections, gaps, spills = [], [], []
    for probe in scored:
        intact, broken = scores[probe.key("intact")], scores[probe.key("broken")]
        detections.append(detection_value(intact[target], broken[target]))
        gaps.append(intact[target] - broken[target])
        if others:
            spills.append(statistics.fmean(intact[pid] - broken[pid] for pid in others))
    detection = _rate(detections, n_resamples, confidence, seed)
    summary = {
        "n": len(scored),
        "detection": detection["rate"], "ci_low": detection["ci_low"], "ci_high": detection["ci_high"],
        "mean_gap": round(statistics.fmean(gaps), 4),
        "spillover": round(statistics.fmean(spills), 4) if spills else None,
        "length_baseline": round(statistics.fmean(length_value(p) for p in scored), 4),
        "random_baseline": RANDOM_BASELINE,
        "mean_abs_word_diff": round(statistics.fmean(abs(p.words_intact - p.words_broken) for p in scored), 2),
    }
    if pairwise is not None:
        values = [pairwise[p.id] for p in scored if p.id in pairwise]
        if values:
            rate = _rate(values, n_resamples, confidence, seed)
            summary |= {"pairwise_detection": rate["rate"], "pairwise_ci": [rate["ci_low"], rate["ci_high"]]}
    return summary


def summarize(probes: list[Probe], scores: dict[str, PrincipleScores], principle_ids: list[str],
              pairwise: dict[str, float] | None = None, n_resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict:
    """Per principle (rubric order) and overall: mean detection over principles and the weakest principle."""
    by_principle: dict[str, list[Probe]] = {}
    for probe in probes:
        by_principle.setdefault(probe.principle, []).append(probe)
    rows = {}
    for pid in principle_ids:
        row = summarize_principle(by_principle.get(pid, []), scores, principle_ids, pairwise, n_resamples,
                                  confidence, seed)
        if row is not None:
            rows[pid] = row
    detections = {pid: row["detection"] for pid, row in rows.items()}
    weakest = min(detections, key=detections.__getitem__) if detections else None
    return {
        "principles": rows,
        "mean_detection": round(statistics.fmean(detections.values()), 4) if detections else None,
        "weakest_principle": weakest,
        "weakest_detection": detections.get(weakest) if weakest else None,
        "mean_length_baseline": (round(statistics.fmean(r["length_baseline"] for r in rows.values()), 4)
                                 if rows else None),
        "random_baseline": RANDOM_BASELINE,
        "n_probes": sum(row["n"] for row in rows.values()),
        "untested_principles": [pid for pid in principle_ids if pid not in rows],
        "confidence": confidence,
    }


def headline(summary: dict) -> dict:
    """The figures that go into metrics.json, reports and model cards."""
    return {
        "probe_detection": summary["mean_detection"],
        "probe_detection_by_principle": {pid: row["detection"] for pid, row in summary["principles"].items()},
        "probe_weakest_principle": summary["weakest_principle"],
        "probe_length_baseline": summary["mean_length_baseline"],
    }


# -- presenting -------------------------------------------------------------------------------------
def format_table(summaries: dict[str, dict]) -> str:
    """A markdown table: one row per rubric label per principle, then each rubric's mean."""
    pairwise = any("pairwise_detection" in row for s in summaries.values() for row in s["principles"].values())
    header = ["rubric", "principle", "n", "detection [CI]", "mean gap", "spill-over", "length-only", "random"]
    header += ["pairwise (both orders) [CI]"] if pairwise else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, summary in summaries.items():
        for pid, row in summary["principles"].items():
            cells = [label, pid, str(row["n"]), f"{fmt(row['detection'], 2)} [{fmt(row['ci_low'], 2)}, "
                     f"{fmt(row['ci_high'], 2)}]", f"{row['mean_gap']:+.2f}",
                     "n/a" if row["spillover"] is None else f"{row['spillover']:+.2f}",
                     fmt(row["length_baseline"], 2), fmt(row["random_baseline"], 2)]
            if pairwise:
                ci = row.get("pairwise_ci")
                cells.append(f"{fmt(row['pairwise_detection'], 2)} [{fmt(ci[0], 2)}, {fmt(ci[1], 2)}]" if ci else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
        mean = [label, "**mean**", str(summary["n_probes"]), f"**{fmt(summary['mean_detection'], 2)}**", "", "",
                fmt(summary["mean_length_baseline"], 2), fmt(summary["random_baseline"], 2)]
        lines.append("| " + " | ".join(mean + ([""] if pairwise else [])) + " |")
    return "\n".join(lines)


def plot_detection(summaries: dict[str, dict], path: Path) -> None:
    """Detection rate per principle with its interval, one colour per rubric, beside the length-only baseline."""
    from rewards.reporting.report import plt, save_figure

    ids = list(dict.fromkeys(pid for s in summaries.values() for pid in s["principles"]))
    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for index, (label, summary) in enumerate(summaries.items()):
        rows = summary["principles"]
        xs = [i - 0.4 + width * (index + 0.5) for i, pid in enumerate(ids) if pid in rows]
        rates = [rows[pid]["detection"] for pid in ids if pid in rows]
        errors = [[max(0.0, rows[pid]["detection"] - rows[pid]["ci_low"]) for pid in ids if pid in rows],
                  [max(0.0, rows[pid]["ci_high"] - rows[pid]["detection"]) for pid in ids if pid in rows]]
        ax.bar(xs, rates, width=width, yerr=errors, capsize=3, label=label)
        if index == 0:
            ax.scatter(xs, [rows[pid]["length_baseline"] for pid in ids if pid in rows], marker="D", s=28,
                       color="tab:red", zorder=3, label="length-only")
    ax.axhline(RANDOM_BASELINE, color="gray", linestyle="--", linewidth=0.8, label="random")
    ax.set_xticks(range(len(ids)), ids, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection rate (intact > broken)")
    ax.set_title("Contrastive probes: does the judge see each principle?")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars reach 1.0
    save_figure(fig, path)


# -- in reports and model cards ---------------------------------------------------------------------
def judge_checks(run_dir: str | Path) -> dict:
    """What a run knows about its judge: probe figures (probes stage) and human agreement (the calibrate stage, else
    ``agreement``), or None."""
    from rewards.artifacts import read_manifest

    probes = (read_manifest(Path(run_dir) / "probes") or {}).get("metrics", {})
    # the run's own calibrate stage first; else a separate `counsel-align agreement` run
    calibration = (read_manifest(Path(run_dir) / "calibrate") or {}).get("metrics", {})
    agreement = (read_manifest(Path(run_dir) / "agreement") or {}).get("metrics", {})
    if calibration.get("judge_agreement") is not None:
        judge_agreement, length = calibration["judge_agreement"], calibration.get("judge_length_baseline")
    else:
        judge_agreement, length = agreement.get("judge_accuracy"), agreement.get("length_accuracy")
    return {
        "probe_detection": probes.get("probe_detection"),
        "probe_detection_by_principle": probes.get("probe_detection_by_principle") or {},
        "probe_weakest_principle": probes.get("probe_weakest_principle"),
        "probe_length_baseline": probes.get("probe_length_baseline"),
        "judge_agreement": judge_agreement,
        "judge_agreement_length_baseline": length,
    }
