"""`counsel-align simulate-clients`: write client prompts from a persona grid with a generator model.

Writes outputs/<run>/simulate/clients.jsonl, a prompt source for later runs
(`data.prompts=outputs/<run>/simulate/clients.jsonl`), with the persona fields as extra columns.
Generated messages are journaled per batch, so an interrupted run resumes.
"""

from __future__ import annotations

from omegaconf import DictConfig

from recipes._entry import StageContext, entry, project_path, run_stage
from rewards.artifacts import Journal, atomic_write_jsonl
from rewards.generation.responders import batched, generate_texts, render_prompts
from rewards.generation.simulated_clients import (
    clean_message,
    client_grid,
    client_row,
    deduplicate,
    load_personas,
    writer_messages,
)
from rewards.log import get_logger
from rewards.models import load_causal_lm, load_tokenizer

log = get_logger(__name__)


def work(ctx: StageContext) -> dict:
    cfg, settings = ctx.cfg, ctx.cfg.simulate
    personas, topics = load_personas(project_path(settings.personas))
    grid = client_grid(personas, topics, list(settings.stages), list(settings.risks), settings.n_clients, cfg.seed)
    journal = Journal(ctx.dir / "journal.jsonl", key="id")
    done = journal.done()
    todo = [spec for spec in grid if spec.id not in done]
    if todo:
        tokenizer = load_tokenizer(settings.model, cfg.model.trust_remote_code)
        model = load_causal_lm(settings.model, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
        for index, batch in enumerate(batched(todo, settings.batch_size)):
            rendered = render_prompts(tokenizer, [writer_messages(spec) for spec in batch])
            outputs = generate_texts(model, tokenizer, rendered, settings.max_new_tokens, settings.temperature,
                                     settings.top_p, 1, cfg.seed + index)
            journal.append_many(client_row(spec, clean_message(out[0]["text"]), str(settings.model))
                                for spec, out in zip(batch, outputs, strict=True))
    generated = journal.done()
    rows = [generated[spec.id] for spec in grid]
    clients, dropped = deduplicate(rows, settings.duplicate_threshold)
    atomic_write_jsonl(ctx.dir / "clients.jsonl", clients)
    log.info(f"simulate-clients: {len(clients)} clients ({dropped} near-duplicates or empty dropped) "
             f"-> {ctx.dir / 'clients.jsonl'}")
    return {"counts": {"n_generated": len(rows), "n_clients": len(clients), "n_dropped_duplicates": dropped}}


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "simulate", work)


main = entry("simulate-clients", run)

if __name__ == "__main__":
    raise SystemExit(main())
