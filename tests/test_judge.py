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


VARIED = [
    JudgeItem("I feel anxious and I cannot sleep at night.", "That sounds really hard. What goes through your mind?"),
    JudgeItem("My partner and I argue about money.", "Just leave."),
    JudgeItem("I lost my job last week and I feel like a failure, and my family does not know yet.",
              "Losing a job can shake how you see yourself. What feels hardest about telling your family?"),
    JudgeItem("Work.", "Tell me more about what is happening at work, and how it has been affecting your sleep."),
    JudgeItem("I cannot stop worrying.", "Worry can take up so much room. When does it feel loudest?"),
]


def test_batched_scores_equal_one_item_per_pass(tiny_model, tiny_tokenizer, rubric):
    single = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, batch_size=1).score(VARIED)
    for batch_size in (2, 3, 8):
        batched = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, batch_size=batch_size).score(VARIED)
        for a, b in zip(batched, single, strict=True):
            assert list(a) == rubric.ids
            assert max(abs(a[pid] - b[pid]) for pid in rubric.ids) < 1e-4


def test_batched_pairwise_equals_one_comparison_per_pass(tiny_model, tiny_tokenizer, rubric):
    asks = [(a.client, a.response, b.response) for a, b in zip(VARIED, VARIED[1:] + VARIED[:1], strict=True)]
    judge = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, batch_size=4)
    single = [judge.compare(*ask) for ask in asks]
    batched = judge.compare_many(asks)
    assert max(abs(a - b) for a, b in zip(batched, single, strict=True)) < 1e-4
    slow = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, reuse_prefix=False).compare_many(asks)
    assert max(abs(a - b) for a, b in zip(batched, slow, strict=True)) < 1e-4


def test_vocabulary_projection_only_where_an_answer_is_read(tiny_model, tiny_tokenizer, rubric):
    judge = LocalLogprobJudge(tiny_model, tiny_tokenizer, rubric, batch_size=3)
    judge.score(VARIED[:1])  # builds the rubric cache
    seen: list[tuple[int, ...]] = []
    handle = tiny_model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append(tuple(output.shape)))
    try:
        judge.score(VARIED[:3])
    finally:
        handle.remove()
    assert seen == [(3, len(rubric.principles), len(tiny_tokenizer))]
