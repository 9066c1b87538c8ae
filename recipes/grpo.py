"""Online RLHF with TRL's GRPOTrainer against the trained reward model (outputs/<run>/reward/model).

counsel-align grpo run=quickstart [train.beta=0.04 train.num_generations=4 ...]
"""

from recipes.online import make_main

main = make_main("grpo")

if __name__ == "__main__":
    raise SystemExit(main())
