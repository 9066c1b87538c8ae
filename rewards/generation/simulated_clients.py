"""Simulated clients: persona x topic x stage of change x risk level -> a client message written by a generator model.

The result is a prompt source (JSONL with the fields ``data.prompts`` needs) that keeps the persona fields as
columns. Near-duplicate messages are dropped, so a weak generator repeating itself does not inflate the set.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from rewards.errors import UserError
from rewards.pairs import text_similarity

STAGE_HINTS = {
    "precontemplation": "does not think anything needs to change and may resist the idea",
    "contemplation": "is torn: sees a problem but is unsure about changing",
    "preparation": "has decided to change and is planning first steps",
    "action": "is actively trying to change and meeting obstacles",
    "maintenance": "changed some time ago and wants to keep it up or fears slipping back",
}
RISK_HINTS = {
    "low": "no sign of danger to themselves or others",
    "moderate": "strong distress, with hints of hopelessness but no plan to harm anyone",
    "high": "clear signs of risk to their own safety, written the way a real person might hint at it",
}
PERSONA_FIELDS = ("name", "age", "occupation", "context", "voice")


@dataclass(frozen=True)
class Persona:
    name: str
    age: int
    occupation: str
    context: str
    voice: str


@dataclass(frozen=True)
class ClientSpec:
    """One cell of the grid: who writes, about what, how ready to change, at what risk."""

    persona: Persona
    topic: str
    stage_of_change: str
    risk: str

    @property
    def id(self) -> str:
        key = f"{self.persona.name}|{self.topic}|{self.stage_of_change}|{self.risk}"
        return "sim-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def load_personas(path: str | Path) -> tuple[list[Persona], list[str]]:
    """Personas and topics from a YAML file: ``personas:`` (name, age, occupation, context, voice), ``topics:``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: persona file not found; set simulate.personas to a YAML file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    personas = []
    for index, entry in enumerate(data.get("personas") or []):
        missing = [f for f in PERSONA_FIELDS if f not in (entry or {})]
        if missing:
            raise UserError(f"{path}: personas.{index}: missing field(s) {missing}; each persona needs "
                            f"{list(PERSONA_FIELDS)}")
        personas.append(Persona(**{f: entry[f] for f in PERSONA_FIELDS}))
    topics = [str(t) for t in data.get("topics") or []]
    if not personas or not topics:
        raise UserError(f"{path}: needs a non-empty 'personas' list and a non-empty 'topics' list")
    return personas, topics


def client_grid(personas: list[Persona], topics: list[str], stages: list[str], risks: list[str],
                limit: int | None, seed: int = 0) -> list[ClientSpec]:
    """Every combination, or a seeded sample of ``limit`` of them."""
    unknown = [s for s in stages if s not in STAGE_HINTS] + [r for r in risks if r not in RISK_HINTS]
    if unknown:
        raise UserError(f"simulate: unknown stage or risk {unknown}; stages: {list(STAGE_HINTS)}, "
                        f"risks: {list(RISK_HINTS)}")
    grid = [ClientSpec(*combo) for combo in itertools.product(personas, topics, stages, risks)]
    if limit and limit < len(grid):
        grid = random.Random(seed).sample(grid, limit)
    return grid


def writer_messages(spec: ClientSpec) -> list[dict]:
    """Chat messages asking a generator model to write the client's first message to a counselor."""
    p = spec.persona
    return [
        {"role": "system", "content": "You write realistic first messages that people send to an online counselor. "
                                      "Write only the message itself, in the first person, one to five sentences."},
        {"role": "user", "content": (
            f"Write the message of {p.name}, {p.age}, {p.occupation}. Background: {p.context}. "
            f"Writing style: {p.voice}. Topic: {spec.topic.replace('_', ' ')}. "
            f"Readiness to change: {STAGE_HINTS[spec.stage_of_change]}. "
            f"Risk: {RISK_HINTS[spec.risk]}.")},
    ]


def clean_message(text: str) -> str:
    """Strip quotes and a leading label the generator may add."""
    text = text.strip().strip('"').strip()
    for label in ("Message:", "Client:"):
        if text.startswith(label):
            text = text[len(label):].strip()
    return text


def deduplicate(rows: list[dict], threshold: float = 0.85) -> tuple[list[dict], int]:
    """Keep the first of every group of near-duplicate messages (and drop empty ones); returns (kept, dropped)."""
    kept: list[dict] = []
    for row in rows:
        if row["text"] and all(text_similarity(row["text"], k["text"]) < threshold for k in kept):
            kept.append(row)
    return kept, len(rows) - len(kept)


def client_row(spec: ClientSpec, text: str, generator: str) -> dict:
    """A ``data.prompts`` row (id, text, topic, stage_of_change, risk) plus the persona as ``persona_*`` columns."""
    persona = {f"persona_{f}": getattr(spec.persona, f) for f in PERSONA_FIELDS}
    return {"id": spec.id, "text": text, "topic": spec.topic, "stage_of_change": spec.stage_of_change,
            "risk": spec.risk, **persona, "generator": generator}
