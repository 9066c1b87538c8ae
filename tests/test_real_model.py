"""The embedded SmolLM2-135M-Instruct: GGUF conversion, cached loading, generation and judging."""

from pathlib import Path

import pytest

from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.models import embedded_gguf, load_causal_lm, load_tokenizer, resolve_model_path

pytestmark = pytest.mark.real_model
EMBEDDED = "embedded:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smollm():
    path = Path(resolve_model_path(EMBEDDED))  # converts once into the cache
    return load_causal_lm(EMBEDDED, device="cpu"), load_tokenizer(EMBEDDED), path


def test_embedded_gguf_converts_to_a_cached_safetensors_folder(smollm):
    model, tokenizer, path = smollm
    assert embedded_gguf("smollm2-135m-instruct").suffix == ".gguf"
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template


def test_generation_and_judging_on_the_real_model(smollm, rubric):
    from rewards.generation.responders import chat_messages, generate_texts, render_prompts

    model, tokenizer, _ = smollm
    rendered = render_prompts(tokenizer, [chat_messages("I have been feeling low since I moved cities.")])
    reply = generate_texts(model, tokenizer, rendered, max_new_tokens=24)[0][0]
    assert reply["n_tokens"] > 0 and reply["text"]
    judge = LocalLogprobJudge(model, tokenizer, rubric)
    scores = judge.score([JudgeItem("I have been feeling low since I moved cities.", reply["text"])])[0]
    assert list(scores) == rubric.ids and all(1.0 <= s <= 5.0 for s in scores.values())
