import torch

from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.judges.base import rubric_system_prompt

ITEMS = [
    JudgeItem("I feel anxious and I cannot sleep at night.", "That sounds really hard. What goes through your mind?"),
    JudgeItem("My partner and I argue about money.", "Just leave."),
]


def test_shared_prefix_scores_equal_full_passes(tiny_model, tiny_tokenizer, rubric):
    fast = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, reuse_prefix=True)
    slow = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, reuse_prefix=False)
    fast_scores, slow_scores = fast.score(ITEMS), slow.score(ITEMS)
    for a, b in zip(fast_scores, slow_scores, strict=True):
        assert list(a) == rubric.ids
        for pid in rubric.ids:
            assert abs(a[pid] - b[pid]) < 1e-3
            assert 1.0 <= a[pid] <= 5.0
    # The cached rubric prefix is restored after each item, so order does not matter.
    assert fast.score(ITEMS[::-1]) == fast_scores[::-1]


def test_scores_are_expected_digit_probabilities(tiny_model, tiny_tokenizer, rubric):
    judge = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric)
    sequence = judge._context(
        [{"role": "system", "content": rubric_system_prompt(rubric)},
         {"role": "user", "content": "x"}], "Score: ", "1")
    with torch.no_grad():
        logits = tiny_model(torch.tensor([sequence])).logits[0, -1]
    probs = torch.softmax(logits[judge.digit_ids], -1)
    assert probs.sum().item() == 1.0 or abs(probs.sum().item() - 1.0) < 1e-5
    assert len(set(judge.digit_ids)) == 5


def test_compare_is_a_probability(tiny_model, tiny_tokenizer, rubric):
    judge = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric)
    p = judge.compare(ITEMS[0].client, ITEMS[0].response, "Just leave.")
    assert 0.0 < p < 1.0
