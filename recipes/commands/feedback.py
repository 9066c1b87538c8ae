"""``counsel-align feedback``: feedback on a trainee's reply from the configured judge.

    counsel-align feedback --message client.txt --reply reply.txt [judge=... key=value ...]
    echo "my reply" | counsel-align feedback --message client.txt
    counsel-align feedback --client persona="a student anxious about exams" --reply reply.txt

``-`` reads a file from stdin. With ``--client persona=...`` the model (``model.name_or_path``) plays the client and
writes the message; without ``--reply`` the trainee types the reply on stdin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import DictConfig

from recipes._entry import compose_config, handle_errors, project_path
from rewards.artifacts import atomic_write_json
from rewards.errors import UserError
from rewards.judges.feedback import Feedback, local_feedback, remote_feedback, simulate_client
from rewards.rubric import load_rubric


def read_text(source: str, what: str) -> str:
    if source == "-":
        if sys.stdin.isatty():
            print(f"Type the {what}, then Ctrl-D:", file=sys.stderr)
        text = sys.stdin.read()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: {what} file not found; pass a text file or - for stdin")
        text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise UserError(f"{source}: the {what} is empty")
    return text.strip()


def persona_of(value: str) -> str:
    if not value.startswith("persona="):
        raise UserError(f"--client {value!r}: write it as --client persona='a description of the client'")
    return value[len("persona="):].strip()


def client_message(args: argparse.Namespace, cfg: DictConfig) -> str:
    if args.client:
        from rewards.models import load_causal_lm, load_tokenizer

        persona = persona_of(args.client)
        tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
        model = load_causal_lm(cfg.model.name_or_path, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
        return simulate_client(model, tokenizer, persona, cfg.generate.max_new_tokens, seed=cfg.seed)
    if args.message:
        return read_text(args.message, "client message")
    raise UserError("give the client's message with --message FILE (or -), or simulate one with --client persona=...")


def judge_feedback(cfg: DictConfig, client: str, reply: str, max_new_tokens: int = 48) -> Feedback:
    rubric = load_rubric(project_path(cfg.principles.path))
    weights = rubric.weights(dict(cfg.principles.weights))
    if cfg.judge.backend == "local":
        from recipes.judge import build_judge

        return local_feedback(build_judge(cfg, rubric), client, reply, weights, max_new_tokens)
    if cfg.judge.backend == "openai_compatible":
        return remote_feedback(rubric, client, reply, weights, base_url=cfg.judge.base_url, model=cfg.judge.model,
                               api_key_env=cfg.judge.api_key_env, timeout=cfg.judge.timeout,
                               max_retries=cfg.judge.max_retries,
                               temperature=cfg.judge.temperature)
    raise UserError(f"judge.backend: unknown backend {cfg.judge.backend!r}; use judge=local or judge=openai_compatible")


def render(feedback: Feedback) -> str:
    width = max(len(pid) for pid in feedback.scores)
    lines = [f"Client:  {feedback.client}", f"Trainee: {feedback.reply}", ""]
    lines += [f"{pid:<{width}}  {score:.1f}  {feedback.reasons[pid]}" for pid, score in feedback.scores.items()]
    lines += ["", f"weighted score: {feedback.weighted_score:.2f} / 5", f"Suggestion: {feedback.suggestion}"]
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="counsel-align feedback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--message", help="file with the client's message (- = stdin)")
    parser.add_argument("--reply", help="file with the trainee's reply (- = stdin; default stdin)")
    parser.add_argument("--client", help="persona=DESCRIPTION: a model plays this client and writes the message")
    parser.add_argument("--json", action="store_true", help="print the feedback as JSON")
    parser.add_argument("--out", help="also write the feedback as JSON to this file")
    parser.add_argument("--max-new-tokens", type=int, default=48,
                        help="longest generated reason/suggestion with a local judge (default 48)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(list(sys.argv[1:] if argv is None else argv))

    def action() -> None:
        unknown = [o for o in overrides if "=" not in o]
        if unknown:
            raise UserError(f"unknown argument {unknown[0]!r}; see `counsel-align feedback --help`")
        if args.message == "-" and (args.reply in (None, "-")):
            raise UserError("stdin can carry only one text: give --message or --reply as a file")
        cfg = compose_config(overrides)
        client = client_message(args, cfg)
        if args.client:
            print(f"Client ({persona_of(args.client)}): {client}", file=sys.stderr, flush=True)
        reply = read_text(args.reply or "-", "trainee reply")
        feedback = judge_feedback(cfg, client, reply, args.max_new_tokens)
        if args.out:
            atomic_write_json(Path(args.out), feedback.as_dict())
        print(json.dumps(feedback.as_dict(), indent=2) if args.json else render(feedback))

    return handle_errors("feedback", action)


if __name__ == "__main__":
    raise SystemExit(main())
