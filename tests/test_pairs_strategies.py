"""Pair strategies and guards: best-vs-random, near-duplicates, length-ratio cap and stats, split leakage."""

from __future__ import annotations

import pytest

from rewards.errors import UserError
from rewards.pairs import PairPolicy, build_pairs, check_split_leakage, length_stats, text_similarity

PROMPTS = {f"p{i}": {"id": f"p{i}", "topic": "grief", "text": f"My dog died, day {i}."} for i in range(20)}
REPLIES = ["I am so sorry. What was your dog like?", "Losing a companion is hard. How are you sleeping?",
           "Grief can come in waves; what helps you on bad days?", "Get a new dog.", "ok"]


def _judged(rubric, prompt_id: str, response: str, value: float) -> dict:
    return {"prompt_id": prompt_id, "source": response[:6], "response": response,
            "scores": dict.fromkeys(rubric.ids, value)}


def _five_replies(rubric, prompt_ids) -> list[dict]:
    return [_judged(rubric, pid, reply, 5.0 - i) for pid in prompt_ids for i, reply in enumerate(REPLIES)]


def _chosen_rejected(pairs) -> list[tuple[str, str]]:
    return [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs]


def test_best_vs_random_pairs_the_best_with_a_seeded_random_other(rubric):
    judged = _five_replies(rubric, PROMPTS)
    policy = PairPolicy(strategy="best_vs_random", margin=0.0, safety_threshold=0.0, seed=1)
    pairs, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), policy)
    assert counts["pairs"] == len(PROMPTS) == len(pairs)
    assert all(chosen == REPLIES[0] for chosen, _ in _chosen_rejected(pairs))
    rejected = [r for _, r in _chosen_rejected(pairs)]
    assert len(set(rejected)) > 1  # not always the worst, unlike best_vs_worst
    again, _ = build_pairs(PROMPTS, judged, rubric, rubric.weights(), policy)
    assert again == pairs  # deterministic for a seed
    other, _ = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(
        strategy="best_vs_random", margin=0.0, safety_threshold=0.0, seed=2))
    assert [r for _, r in _chosen_rejected(other)] != rejected


def test_unknown_strategy_is_a_user_error(rubric):
    with pytest.raises(UserError, match="pairs.strategy.*best_vs_random"):
        build_pairs(PROMPTS, _five_replies(rubric, ["p0"]), rubric, rubric.weights(), PairPolicy(strategy="best"))


def test_similarity_scores():
    assert text_similarity("That sounds hard.", "that sounds hard. ") == 1.0
    assert text_similarity("That sounds really hard. What helps?", "That sounds so hard. What helps?") > 0.8
    assert text_similarity(REPLIES[0], REPLIES[3]) < 0.5


def test_near_duplicates_are_not_pairs(rubric):
    judged = [_judged(rubric, "p0", "That sounds really hard. What helps you?", 4.0),
              _judged(rubric, "p0", "That sounds really hard! What helps you?", 2.0),
              _judged(rubric, "p0", "Just move on.", 1.0)]
    pairs, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(safety_threshold=0.0))
    assert counts["near_duplicates"] == 1 and counts["pairs"] == 2
    assert ("That sounds really hard. What helps you?", "That sounds really hard! What helps you?") not in \
        _chosen_rejected(pairs)
    kept, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(),
                               PairPolicy(safety_threshold=0.0, duplicate_threshold=None))
    assert counts["near_duplicates"] == 0 and len(kept) == 3


def test_length_ratio_cap_and_stats(rubric):
    judged = _five_replies(rubric, ["p0"])
    uncapped, _ = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(safety_threshold=0.0))
    stats = length_stats(uncapped)
    assert stats["chosen_longer_fraction"] > 0.5 and stats["max_length_ratio"] > 3
    assert stats["chosen_mean_chars"] > stats["rejected_mean_chars"]
    capped, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(),
                                 PairPolicy(safety_threshold=0.0, max_length_ratio=1.5))
    assert counts["length_capped"] > 0 and len(capped) == len(uncapped) - counts["length_capped"]
    assert all(len(c) <= 1.5 * len(r) for c, r in _chosen_rejected(capped))
    assert length_stats(capped)["max_length_ratio"] <= 1.5
    assert length_stats([]) == {}


def test_split_leakage_by_id_or_text_is_an_error(rubric):
    pairs, _ = build_pairs(PROMPTS, _five_replies(rubric, ["p0", "p1", "p2"]), rubric, rubric.weights(),
                           PairPolicy(strategy="best_vs_worst", safety_threshold=0.0))
    check_split_leakage({"train": pairs[:2], "test": pairs[2:]})
    with pytest.raises(UserError, match="'p1' is in both the train and the test split"):
        check_split_leakage({"train": pairs[:2], "test": pairs[1:]})
    same_text = {**pairs[2], "prompt_id": "p9", "prompt": [{"role": "user", "content": "MY DOG died, day 0"}]}
    with pytest.raises(UserError, match="same text"):
        check_split_leakage({"train": pairs[:2], "test": [same_text]})
