"""Per-stage wall seconds of the latest finished quickstart run, read from its manifests (not re-run here).

Run the quickstart first (``counsel-align pipeline``); this reports ``quickstart_<stage>_s`` for each stage so that
regressions show next to the ratios. Pass ``--run NAME`` to pick a run under ``outputs/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import write_result
from recipes._entry import PROJECT_ROOT

STAGE_ORDER = ("generate", "judge", "probes", "pairs", "reward", "dpo", "evaluate", "report")


def latest_finished_run(output_root: Path) -> Path | None:
    finished = [manifest.parent.parent for manifest in output_root.glob("*/report/manifest.json")]
    return max(finished, key=lambda run: (run / "report" / "manifest.json").stat().st_mtime, default=None)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", help="run name under outputs/ (default: the newest finished run)")
    parser.add_argument("--output-root", default=str(PROJECT_ROOT / "outputs"))
    parser.add_argument("--quick", action="store_true", help="accepted for the runner; reading is always quick")
    args = parser.parse_args(argv)
    root = Path(args.output_root)
    run_dir = root / args.run if args.run else latest_finished_run(root)
    if run_dir is None or not (run_dir / "report" / "manifest.json").exists():
        print("quickstart_stages: no finished run under outputs/; run `counsel-align pipeline` first")
        return {}
    seconds = {}
    for stage in STAGE_ORDER:
        manifest_path = run_dir / stage / "manifest.json"
        if manifest_path.exists():
            seconds[stage] = json.loads(manifest_path.read_text())["wall_seconds"]
    manifest = json.loads((run_dir / "generate" / "manifest.json").read_text())
    result = {**{f"quickstart_{stage}_s": value for stage, value in seconds.items()},
              "quickstart_total_s": round(sum(seconds.values()), 1), "run": run_dir.name,
              "model": manifest["config"]["model"]["name_or_path"], "counts": manifest["counts"]}
    write_result("quickstart_stages", result, quick=args.quick)
    for key, value in result.items():
        if key.startswith("quickstart_"):
            print(f"{key}={value}")
    return result


if __name__ == "__main__":
    main()
