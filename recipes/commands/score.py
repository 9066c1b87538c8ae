"""`counsel-align score`: per-principle scores of one (prompt, response) from a trained reward model.

usage: counsel-align score --prompt TEXT --response TEXT [--model PATH | run=NAME] [principles.weights.<id>=W ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipes._entry import handle_errors
from rewards.errors import UserError

WEIGHT_PREFIX = "principles.weights."


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, float], dict[str, str]]:
    parser = argparse.ArgumentParser(prog="counsel-align score", description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", required=True, help="the client's message")
    parser.add_argument("--response", required=True, help="the counselor reply to score")
    parser.add_argument("--model", help="reward model folder or hub id (default: <output_root>/<run>/reward/model)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own code to run")
    parser.add_argument("overrides", nargs="*", help="run=NAME, output_root=DIR, principles.weights.<id>=W")
    args = parser.parse_intermixed_args(argv)
    weights, settings = {}, {"run": "quickstart", "output_root": "outputs"}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"score: {item!r} is not key=value (e.g. principles.weights.empathy=0)")
        if key.startswith(WEIGHT_PREFIX):
            try:
                weights[key[len(WEIGHT_PREFIX):]] = float(value)
            except ValueError:
                raise UserError(f"score: {key}={value!r} is not a number") from None
        elif key in settings:
            settings[key] = value
        else:
            raise UserError(f"score: unknown option {key!r}; use run=, output_root= or principles.weights.<id>=")
    return args, weights, settings


def model_path(args: argparse.Namespace, settings: dict[str, str]) -> str:
    if args.model:
        return args.model
    from recipes._entry import project_path

    path = project_path(settings["output_root"]) / settings["run"] / "reward" / "model"
    if not Path(path).exists():
        raise UserError(f"{path}: no trained reward model; run `counsel-align reward run={settings['run']}` "
                        "or pass --model PATH")
    return str(path)


def format_table(result: dict[str, float], weights: dict[str, float]) -> str:
    heads = [h for h in result if h != "aggregate"]
    lines = [f"{'principle':<20} {'weight':>7} {'score':>9}"]
    lines += [f"{h:<20} {weights.get(h, 1.0):>7.2f} {result[h]:>9.4f}" for h in heads]
    lines.append(f"{'aggregate':<20} {'':>7} {result['aggregate']:>9.4f}  (weighted mean of the heads)")
    if heads == ["reward"]:
        lines.append("note: this is a scalar reward model; train with reward=multihead "
                     "for per-principle heads")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def action() -> None:
        args, weights, settings = parse_args(argv)
        from rewards.reward_models.io import load_reward

        scorer = load_reward(model_path(args, settings), trust_remote_code=args.trust_remote_code,
                             device=args.device, weights=weights or None)
        result = scorer.explain([{"role": "user", "content": args.prompt}], args.response)
        if args.json:
            print(json.dumps({"scores": result, "weights": scorer.weights}, sort_keys=True))
        else:
            print(format_table(result, scorer.weights))

    return handle_errors("score", action)


if __name__ == "__main__":
    raise SystemExit(main())
