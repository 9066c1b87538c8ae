"""Online RLHF with TRL's RLOOTrainer against the trained reward model (outputs/<run>/reward/model).

counsel-align rloo run=quickstart [train.beta=0.05 train.num_generations=4 ...]
"""

from recipes.online import make_main

main = make_main("rloo")

if __name__ == "__main__":
    raise SystemExit(main())
