"""Online RLHF with TRL's RLOOTrainer against the trained reward model (outputs/<run>/reward/model).

counsel-align rloo run=quickstart [rloo.beta=0.05 rloo.num_generations=4 ...]
"""

from recipes.online import make_main

main = make_main("rloo")

if __name__ == "__main__":
    raise SystemExit(main())
