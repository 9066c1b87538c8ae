"""Online RLHF with TRL's GRPOTrainer against the trained reward model (outputs/<run>/reward/model).

counsel-align grpo run=quickstart [grpo.beta=0.04 grpo.num_generations=4 ...]
"""

from recipes.online import make_main

main = make_main("grpo")

if __name__ == "__main__":
    raise SystemExit(main())
