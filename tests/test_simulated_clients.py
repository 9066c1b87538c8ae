"""Simulated clients: the persona grid, the writer prompt, deduplication and the command on the tiny model."""

from __future__ import annotations

import json

import pytest

from recipes import simulate_clients
from rewards.errors import UserError
from rewards.generation.simulated_clients import (
    ClientSpec,
    Persona,
    client_grid,
    client_row,
    deduplicate,
    load_personas,
    writer_messages,
)
from rewards.prompts import load_prompts
from tests.conftest import PROJECT_ROOT

PERSONAS = PROJECT_ROOT / "data" / "simulated" / "personas.yaml"


def test_grid_is_complete_or_a_seeded_sample():
    personas, topics = load_personas(PERSONAS)
    full = client_grid(personas, topics, ["contemplation", "action"], ["low", "high"], None)
    assert len(full) == len(personas) * len(topics) * 4 and len({s.id for s in full}) == len(full)
    sample = client_grid(personas, topics, ["contemplation", "action"], ["low", "high"], 10, seed=1)
    assert len(sample) == 10 and sample == client_grid(personas, topics, ["contemplation", "action"],
                                                       ["low", "high"], 10, seed=1)
    with pytest.raises(UserError, match="unknown stage or risk \\['panic'\\]"):
        client_grid(personas, topics, ["panic"], ["low"], None)


def test_writer_prompt_carries_every_persona_field_and_the_cell():
    persona = Persona("Ana", 30, "teacher", "moved abroad", "terse")
    spec = ClientSpec(persona, "work_stress", "precontemplation", "high")
    text = writer_messages(spec)[-1]["content"]
    for value in ("Ana", "30", "teacher", "moved abroad", "terse", "work stress", "does not think anything",
                  "risk to their own safety"):
        assert value in text
    row = client_row(spec, "I am fine, my boss is the problem.", "gen")
    assert row["persona_age"] == 30 and row["persona_voice"] == "terse" and row["risk"] == "high"


def test_deduplicate_drops_near_copies_and_empties():
    rows = [{"text": t} for t in ["I can't sleep since the move.", "i can't sleep since the move!", "",
                                  "My brother stopped calling me."]]
    kept, dropped = deduplicate(rows, threshold=0.85)
    assert [r["text"] for r in kept] == ["I can't sleep since the move.", "My brother stopped calling me."]
    assert dropped == 2


def test_persona_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("personas:\n  - name: A\n    age: 3\ntopics: [sleep]\n")
    with pytest.raises(UserError, match=r"personas.0: missing field\(s\) \['occupation', 'context', 'voice'\]"):
        load_personas(bad)


def test_command_writes_a_prompt_source_with_persona_columns(tiny_model_dir, tmp_path):
    args = [f"model.name_or_path={tiny_model_dir}", f"output_root={tmp_path}", "run=s", "device=cpu",
            "simulate.n_clients=6", "simulate.max_new_tokens=12", "simulate.batch_size=4",
            "simulate.duplicate_threshold=1.01"]  # the tiny random model may repeat itself; keep every message
    assert simulate_clients.main(args) == 0
    out = tmp_path / "s" / "simulate"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["n_generated"] == 6
    rows = [json.loads(line) for line in (out / "clients.jsonl").read_text().splitlines()]
    assert len(rows) == manifest["counts"]["n_clients"] and rows
    assert {"persona_name", "persona_age", "persona_occupation", "persona_context", "persona_voice"} <= set(rows[0])
    prompts = load_prompts(out / "clients.jsonl")
    assert [p.id for p in prompts] == [r["id"] for r in rows]
    assert prompts[0].as_dict()["persona_name"] == rows[0]["persona_name"]  # persona columns reach the generate stage
    assert len(list((out / "journal.jsonl").read_text().splitlines())) == 6
