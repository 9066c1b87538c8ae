"""``tune_for_device`` must change the cost of a DPO step, never its result."""

from __future__ import annotations

import pytest
import torch


def preference_rows():
    from datasets import Dataset

    rows = []
    for index in range(4):
        rows.append({
            "prompt": [{"role": "user", "content": f"I feel anxious and I cannot sleep at night. Case {index}."}],
            "chosen": [{"role": "assistant", "content": "That sounds really hard. What goes through your mind?"}],
            "rejected": [{"role": "assistant", "content": "Score: 1 Score: 2" * (index + 1)}],
        })
    return Dataset.from_list(rows)


def loss_and_grads(model_dir, tokenizer, tmp_path, tune: bool):
    from rewards.training.policy import build_dpo_trainer

    settings = {"peft": "lora", "lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"}, "beta": 0.1,
                "max_length": 256, "per_device_train_batch_size": 4, "max_steps": 1, "bf16": False,
                "gradient_checkpointing": False, "use_cpu": True, "save_steps": 1000}
    torch.manual_seed(0)
    trainer = build_dpo_trainer(str(model_dir), tokenizer, preference_rows(), settings, tmp_path / str(tune), [],
                                tune=tune)
    # LoRA B starts at zero, which would make policy == reference; give every adapter weight a value.
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.linspace(-0.05, 0.05, parameter.numel()).view_as(parameter))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, batch


@pytest.fixture
def original_trl_rule():
    """Restore TRL's own compact-scoring rule around the test (the tuning is process-wide)."""
    import trl.trainer.utils as trl_utils

    saved = trl_utils._use_triton
    original = getattr(saved, "__wrapped_rule__", saved)
    trl_utils._use_triton = original
    yield original
    trl_utils._use_triton = saved


def test_tuned_step_has_the_same_loss_and_gradients(tiny_model_dir, tiny_tokenizer, tmp_path, original_trl_rule):
    import trl.trainer.utils as trl_utils

    plain_loss, plain_grads, batch = loss_and_grads(tiny_model_dir, tiny_tokenizer, tmp_path, tune=False)
    assert not trl_utils._use_triton(torch.device("cpu")), "TRL scores every position on CPU by default"
    tuned_loss, tuned_grads, _ = loss_and_grads(tiny_model_dir, tiny_tokenizer, tmp_path, tune=True)
    assert trl_utils._use_triton(torch.device("cpu")), "after tuning only completion positions are scored on CPU"
    assert int(batch["completion_mask"].sum()) < batch["completion_mask"].numel(), "the batch has prompt positions"
    assert plain_grads and plain_grads.keys() == tuned_grads.keys()
    torch.testing.assert_close(tuned_loss, plain_loss, rtol=1e-5, atol=1e-6)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(tuned_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(grad.abs().sum() > 0 for grad in plain_grads.values())


def test_tuning_twice_wraps_once(original_trl_rule):
    import trl.trainer.utils as trl_utils

    from rewards.training.policy import tune_for_device

    tune_for_device(None)
    first = trl_utils._use_triton
    tune_for_device(None)
    assert trl_utils._use_triton is first
    assert trl_utils._use_triton.__wrapped_rule__ is original_trl_rule


def test_unverified_trl_version_is_not_patched(original_trl_rule, monkeypatch):
    import trl
    import trl.trainer.utils as trl_utils

    from rewards.training.policy import tune_for_device

    monkeypatch.setattr(trl, "__version__", "0.0.1")
    with pytest.warns(UserWarning, match="TRL 0.0.1: fused-LM-head patch not verified"):
        assert tune_for_device(None) == []
    assert trl_utils._use_triton is original_trl_rule
