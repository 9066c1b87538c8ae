"""Principle rubrics: the YAML researchers edit, validated, hashed and rendered for judges."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rewards.artifacts import sha256_json
from rewards.errors import UserError

SCORE_LEVELS = (1, 2, 3, 4, 5)


class Principle(BaseModel):
    """One judged dimension of a counselor's reply, scored 1..5."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    anchors: dict[int, str]
    weight: float = Field(ge=0)
    safety: bool = False

    @field_validator("anchors")
    @classmethod
    def _anchors_cover_1_3_5(cls, anchors: dict[int, str]) -> dict[int, str]:
        missing = {1, 3, 5} - set(anchors)
        if missing:
            raise ValueError(f"needs anchors for scores 1, 3 and 5 (missing {sorted(missing)})")
        if any(level not in SCORE_LEVELS for level in anchors):
            raise ValueError("anchor keys must be scores between 1 and 5")
        return dict(sorted(anchors.items()))


class Rubric(BaseModel):
    """A named, versioned set of principles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int | str
    description: str = ""
    principles: list[Principle] = Field(min_length=1)

    @field_validator("principles")
    @classmethod
    def _ids_unique(cls, principles: list[Principle]) -> list[Principle]:
        ids = [p.id for p in principles]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"principle ids must be unique (repeated: {', '.join(duplicates)})")
        return principles

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.principles]

    @property
    def safety_ids(self) -> list[str]:
        return [p.id for p in self.principles if p.safety]

    def weights(self, overrides: dict[str, float] | None = None) -> dict[str, float]:
        """Weights from the rubric, with per-id overrides (unknown ids are an error)."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.ids))
        if unknown:
            raise UserError(
                f"principles.weights: unknown principle id(s) {unknown}; known ids: {self.ids}"
            )
        return {p.id: float(overrides.get(p.id, p.weight)) for p in self.principles}

    def content_hash(self) -> str:
        """Stable hash of the rubric's content (not of its YAML formatting)."""
        return sha256_json(self.model_dump(mode="json"))

    def get(self, principle_id: str) -> Principle:
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        raise KeyError(principle_id)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "<top level>"
    message = error["msg"]
    if error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown field (check spelling)"
    return f"{location}: {message}"


def parse_rubric(data: object, source: str = "<rubric>") -> Rubric:
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors()[:3])
        more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
        raise UserError(f"{source}: invalid rubric: {problems}{more}") from None


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric YAML file; every problem names the file and the field."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: rubric file not found; set principles.path to an existing YAML")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_rubric(data, source=str(path))
