"""Policy and reward-model training: one loop (train_and_save), checkpoints, DPO/GRPO/RLOO/SFT/KTO, TRL patches."""
