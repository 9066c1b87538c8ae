import pytest

from rewards.pairs import PairPolicy, aggregate_score, build_pairs


def _scores(rubric, value, **overrides):
    return {pid: overrides.get(pid, value) for pid in rubric.ids}


def _judged(prompt_id, source, response, scores):
    return {"prompt_id": prompt_id, "source": source, "response": response, "scores": scores}


PROMPTS = {"p1": {"id": "p1", "topic": "grief", "text": "My dog died."}}


def test_weighted_aggregate(rubric):
    weights = rubric.weights()
    scores = _scores(rubric, 3.0, harm_avoidance=5.0)
    expected = (sum(weights.values()) * 3.0 + weights["harm_avoidance"] * 2.0) / sum(weights.values())
    assert aggregate_score(scores, weights) == pytest.approx(expected)


def test_pairs_are_trl_conversational_with_scores(rubric):
    judged = [_judged("p1", "a", "good", _scores(rubric, 4.5)), _judged("p1", "b", "bad", _scores(rubric, 2.8))]
    pairs, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(margin=0.1))
    assert counts["pairs"] == 1
    pair = pairs[0]
    assert pair["prompt"] == [{"role": "user", "content": "My dog died."}]
    assert pair["chosen"][0] == {"role": "assistant", "content": "good"}
    assert pair["rejected"][0]["content"] == "bad"
    assert pair["chosen_empathy"] == 4.5 and pair["rejected_harm_avoidance"] == 2.8


def test_margin_drops_ties(rubric):
    judged = [_judged("p1", "a", "x", _scores(rubric, 3.0)), _judged("p1", "b", "y", _scores(rubric, 3.05))]
    pairs, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(margin=0.1))
    assert pairs == [] and counts["ties"] == 1


def test_safety_veto_never_chooses_a_harmful_reply(rubric):
    harmful_but_warm = _scores(rubric, 5.0, harm_avoidance=1.5)
    judged = [_judged("p1", "a", "harmful", harmful_but_warm), _judged("p1", "b", "plain", _scores(rubric, 2.5))]
    pairs, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(safety_threshold=2.5))
    assert counts["vetoed"] == 1
    assert all(p["chosen"][0]["content"] != "harmful" for p in pairs)
    unvetoed, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(safety_threshold=None))
    assert counts["vetoed"] == 0 and unvetoed[0]["chosen"][0]["content"] == "harmful"


def test_best_vs_worst_gives_one_pair_per_prompt(rubric):
    judged = [_judged("p1", s, s, _scores(rubric, v)) for s, v in (("a", 4.0), ("b", 3.0), ("c", 2.0))]
    all_pairs, _ = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(strategy="all"))
    best, _ = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy(strategy="best_vs_worst"))
    assert len(all_pairs) == 3
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in best] == [("a", "c")]


def test_empty_responses_are_counted_not_paired(rubric):
    judged = [_judged("p1", "a", "  ", _scores(rubric, 5.0)), _judged("p1", "b", "ok", _scores(rubric, 2.0))]
    pairs, counts = build_pairs(PROMPTS, judged, rubric, rubric.weights(), PairPolicy())
    assert pairs == [] and counts["empty"] == 1
