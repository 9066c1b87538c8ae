"""Client prompts: loading the JSONL files and a stable, hash-based, prompt-level split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rewards.errors import UserError

REQUIRED_FIELDS = ("id", "text", "topic", "stage_of_change", "risk")


@dataclass(frozen=True)
class ClientPrompt:
    """One client message; ``extra`` keeps any other fields of its line (e.g. a simulated client's persona)."""

    id: str
    text: str
    topic: str
    stage_of_change: str
    risk: str
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def as_dict(self) -> dict:
        return {**self.extra, **{name: getattr(self, name) for name in REQUIRED_FIELDS}}


def split_of(prompt_id: str, test_fraction: float) -> str:
    """'train' or 'test', from a hash of the id: stable across runs, machines and file order."""
    bucket = int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test_fraction else "train"


def _prompt_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(source.glob("*.jsonl"))
        if not files:
            raise UserError(f"{source}: no *.jsonl prompt files; set data.prompts to a file or folder")
        return files
    if source.exists():
        return [source]
    raise UserError(f"{source}: prompts not found; set data.prompts to a JSONL file or folder")


def _parse_line(path: Path, number: int, line: str) -> ClientPrompt:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    missing = [name for name in REQUIRED_FIELDS if not row.get(name)]
    if missing:
        raise UserError(f"{path}:{number}: missing field(s) {missing}; each line needs {list(REQUIRED_FIELDS)}")
    extra = {key: value for key, value in row.items() if key not in REQUIRED_FIELDS}
    return ClientPrompt(**{name: str(row[name]) for name in REQUIRED_FIELDS}, extra=extra)


def load_prompts(source: str | Path) -> list[ClientPrompt]:
    prompts: list[ClientPrompt] = []
    for path in _prompt_files(Path(source)):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    prompts.append(_parse_line(path, number, line))
    seen: set[str] = set()
    for prompt in prompts:
        if prompt.id in seen:
            raise UserError(f"{source}: prompt id {prompt.id!r} appears more than once")
        seen.add(prompt.id)
    return prompts


def select_prompts(
    prompts: list[ClientPrompt],
    split: str,
    test_fraction: float,
    limit: int | None = None,
    topics: list[str] | None = None,
) -> list[ClientPrompt]:
    """Prompts of one split, optionally filtered by topic; a limit keeps a hash-ordered subset."""
    chosen = [p for p in prompts if split_of(p.id, test_fraction) == split]
    if topics:
        chosen = [p for p in chosen if p.topic in set(topics)]
    # Hash order spreads a small limit over topics instead of taking the first file.
    chosen.sort(key=lambda p: hashlib.sha256(f"order:{p.id}".encode()).hexdigest())
    return chosen[:limit] if limit else chosen
