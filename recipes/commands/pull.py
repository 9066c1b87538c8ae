"""``counsel-align pull <hub-id|path> [--to DIR]``."""

from recipes.commands.hub_commands import pull_main as main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
