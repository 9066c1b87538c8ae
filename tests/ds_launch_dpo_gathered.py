"""Launched by tests/test_distributed.py under `accelerate launch`: the DPO recipe, then the gathered parameters.

usage: accelerate launch ... tests/ds_launch_dpo_gathered.py GATHERED.pt [hydra overrides...]
Runs `recipes.dpo` unchanged, then gathers the trained ZeRO-3 partitions on every rank and saves them from rank 0,
so the test can compare them with the exported safetensors.
"""

from __future__ import annotations

import sys

import torch

import recipes.dpo as dpo_recipe

captured = {}


def main() -> int:
    out, overrides = sys.argv[1], sys.argv[2:]
    build = dpo_recipe.build_dpo_trainer

    def capture(*args, **kwargs):
        captured["trainer"] = build(*args, **kwargs)
        return captured["trainer"]

    dpo_recipe.build_dpo_trainer = capture
    code = dpo_recipe.main(overrides)
    if code != 0:
        return code
    import deepspeed

    model = captured["trainer"].model
    params = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None):
        gathered = {name: p.detach().clone() for name, p in params.items()}
    if captured["trainer"].is_world_process_zero():
        torch.save(gathered, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
