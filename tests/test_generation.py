from rewards.artifacts import Journal
from rewards.generation.responders import Responder, generate_candidates

PROMPTS = [{"id": f"p{i}", "text": f"I feel anxious number {i}."} for i in range(5)]


class CountingModel:
    """Wraps a model and counts generate() calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.device = model.device

    def generate(self, **kwargs):
        self.calls += 1
        return self.model.generate(**kwargs)


def test_generation_journals_every_sample_and_resumes(tmp_path, tiny_model, tiny_tokenizer):
    journal = Journal(tmp_path / "journal.jsonl")
    responder = Responder(name="c", model="tiny", system_prompt="Be kind.", temperature=0.8, num_samples=2)
    model = CountingModel(tiny_model)
    generate_candidates(model, tiny_tokenizer, PROMPTS[:3], responder, journal, batch_size=2, max_new_tokens=5,
                        seed=0)
    assert model.calls == 2 and len(journal.done()) == 6
    generate_candidates(model, tiny_tokenizer, PROMPTS, responder, journal, batch_size=2, max_new_tokens=5, seed=0)
    assert model.calls == 3, "only the two unfinished prompts are generated"
    records = journal.done()
    assert len(records) == 10
    assert all(r["source"] == "c" and r["n_tokens"] <= 5 for r in records.values())
