"""Generate, judge and evaluate sharded across the processes of `accelerate launch`: disjoint shards of whole
batches, per-rank journals merged by rank 0, replies seeded per item; 2 processes give the outputs of 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rewards.artifacts import Journal
from rewards.distributed import map_batches_sharded, shard, unshard
from rewards.generation.responders import Responder, generate_candidates
from tests.conftest import PROJECT_ROOT, tiny_overrides

PROMPTS = [{"id": f"p{i}", "text": f"I feel anxious{' and tired' * i} number {i}."} for i in range(7)]
RESPONDER = Responder(name="c", model="tiny", system_prompt="Be kind.", temperature=1.0, top_p=0.9, num_samples=2)


def as_rank(monkeypatch, rank: int, world_size: int) -> None:
    """Make this process see itself as one rank of a launch (the helpers read RANK and WORLD_SIZE)."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))


def test_shards_are_disjoint_cover_everything_and_unshard_restores_the_order():
    items = list(range(11))
    shards = [shard(items, rank, 3) for rank in range(3)]
    assert sorted(x for part in shards for x in part) == items
    assert shards == [shard(items, rank, 3) for rank in range(3)]  # the same on every call
    assert unshard(shards) == items
    assert map_batches_sharded(lambda batch: [x * 2 for x in batch], items, 4) == [x * 2 for x in items]


def test_merging_rank_journals_adds_each_key_once_and_skips_a_torn_tail(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append_many([{"key": "a", "v": 1}])
    journal.for_rank(0, 2).append_many([{"key": "a", "v": 1}, {"key": "c", "v": 3}])
    journal.for_rank(1, 2).append_many([{"key": "b", "v": 2}])
    with open(journal.rank_path(1), "a") as handle:
        handle.write('{"key": "d", "v"')  # rank 1 killed mid-write
    assert journal.for_rank(0, 1) is journal
    assert journal.merge_rank_files() == 2
    assert journal.rank_files() == []
    assert [r["key"] for r in journal.compact()] == ["a", "b", "c"]
    assert journal.path.read_text() == "".join(json.dumps({"key": k, "v": v}) + "\n" for k, v in
                                               (("a", 1), ("b", 2), ("c", 3)))


def generated(model, tokenizer, path: Path, batch_size: int, ranks: int = 1, monkeypatch=None) -> str:
    """Run generation as ``ranks`` processes would, one after the other, and return the merged journal's text."""
    journal = Journal(path)
    for rank in range(ranks):
        if monkeypatch is not None:
            as_rank(monkeypatch, rank, ranks)
        generate_candidates(model, tokenizer, PROMPTS, RESPONDER, journal, batch_size, max_new_tokens=6, seed=3)
    journal.merge_rank_files()
    journal.compact()
    return path.read_text()


def test_sampled_replies_do_not_depend_on_the_batch_size(tmp_path, tiny_model, tiny_tokenizer):
    # Seeded per batch (the old code), a reply changed with the prompts that shared its batch.
    one = generated(tiny_model, tiny_tokenizer, tmp_path / "one.jsonl", batch_size=1)
    three = generated(tiny_model, tiny_tokenizer, tmp_path / "three.jsonl", batch_size=3)
    assert one == three
    replies = [json.loads(line)["response"] for line in one.splitlines()]
    assert len(replies) == 14 and len(set(replies)) > 1


def test_two_ranks_generate_what_one_process_does(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    single = generated(tiny_model, tiny_tokenizer, tmp_path / "single.jsonl", batch_size=2)
    assert generated(tiny_model, tiny_tokenizer, tmp_path / "two.jsonl", 2, ranks=2, monkeypatch=monkeypatch) == single


class CountingModel:
    """Wraps a model and counts the prompts it generates for."""

    def __init__(self, model):
        self.model, self.device, self.prompts = model, model.device, 0

    def generate(self, **kwargs):
        self.prompts += len(kwargs["input_ids"]) // RESPONDER.num_samples
        return self.model.generate(**kwargs)


def test_a_killed_launch_resumes_with_another_number_of_processes(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    single = generated(tiny_model, tiny_tokenizer, tmp_path / "single.jsonl", batch_size=2)
    journal = Journal(tmp_path / "journal.jsonl")
    as_rank(monkeypatch, 1, 3)  # of a 3-process launch only rank 1 finished its shard (batches 1 and 4 of 4)
    generate_candidates(tiny_model, tiny_tokenizer, PROMPTS, RESPONDER, journal, 2, max_new_tokens=6, seed=3)
    assert len(Journal(journal.rank_path(1)).done()) == 2 * 2
    journal.merge_rank_files()  # what rank 0 does first when the stage starts again
    model = CountingModel(tiny_model)
    for rank in range(2):  # rerun with 2 processes: only the 5 prompts not yet done are generated
        as_rank(monkeypatch, rank, 2)
        generate_candidates(model, tiny_tokenizer, PROMPTS, RESPONDER, journal, 2, max_new_tokens=6, seed=3)
    assert model.prompts == 5
    journal.merge_rank_files()
    journal.compact()
    assert journal.path.read_text() == single


def test_two_ranks_judge_what_one_process_does(tmp_path, tiny_model, tiny_tokenizer, rubric, monkeypatch):
    from recipes.judge import judge_all
    from rewards.judges import LocalLogprobJudge

    judge = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric)
    prompts = {p["id"]: p for p in PROMPTS}
    todo = [{"key": f"{p['id']}|c|0", "prompt_id": p["id"], "response": "Tell me more."} for p in PROMPTS]

    def judged(folder: Path, ranks: int) -> str:
        journal = Journal(folder / "journal.jsonl")
        for rank in range(ranks):
            as_rank(monkeypatch, rank, ranks)
            assert not judge_all(judge, prompts, todo, journal, 3, folder / f".usage{rank}.json").items
        journal.merge_rank_files()
        journal.compact()
        return journal.path.read_text()

    assert judged(tmp_path / "two", 2) == judged(tmp_path / "one", 1)


@pytest.mark.multiprocess
def test_generate_judge_and_evaluate_under_accelerate_launch_equal_one_process(tiny_model_dir, tmp_path):
    from recipes import evaluate, generate, judge
    from tests.test_distributed import launch

    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(PROJECT_ROOT)}
    # 5 prompts in batches of 2: rank 0 takes batches 1 and 3, rank 1 batch 2 (uneven shards on purpose).
    changed = {"data.max_train_prompts": 4, "data.max_test_prompts": 1, "generate.batch_size": 2,
               "generate.max_new_tokens": 8}
    overrides = {run: [o for o in tiny_overrides(tiny_model_dir, tmp_path, run) if o.split("=")[0] not in changed]
                 + [f"{key}={value}" for key, value in changed.items()] for run in ("one", "two")}
    # evaluate of a checkpoint needs no other stage: the tiny model against itself, 1 test prompt + 4 red flags in
    # batches of 2 (rank 0 takes 2 batches of each model's replies, rank 1 one).
    evaluating = [f"evaluate.checkpoint={tiny_model_dir}", "evaluate.redflag_limit=4", "evaluate.batch_size=2",
                  "evaluate.max_new_tokens=8"]
    for stage in (generate, judge):
        assert stage.main(overrides["one"]) == 0
    assert evaluate.main(overrides["one"] + evaluating) == 0
    for stage in ("generate", "judge"):
        launch(env, "ddp", ["-m", f"recipes.{stage}"], overrides["two"], timeout=600)
    launch(env, "ddp", ["-m", "recipes.evaluate"], overrides["two"] + evaluating, timeout=600)
    for output in ("eval.jsonl", "redflags.jsonl", "metrics.json"):
        one, two = (tmp_path / run / "evaluate" / output for run in ("one", "two"))
        assert two.read_bytes() == one.read_bytes(), output
    for stage, output in (("generate", "candidates.jsonl"), ("judge", "judged.jsonl")):
        one, two = tmp_path / "one" / stage, tmp_path / "two" / stage
        assert (two / output).read_bytes() == (one / output).read_bytes(), stage
        manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (one, two)]
        assert manifests[1]["outputs_sha256"] == manifests[0]["outputs_sha256"], stage
        assert manifests[1]["counts"] == manifests[0]["counts"], stage
        assert not list(two.glob("*.rank*")), stage  # rank journals and usage files merged away
        assert (manifests[0]["metrics"]["processes"], manifests[1]["metrics"]["processes"]) == (1, 2), stage
