"""``counsel-align push <checkpoint> <hub-id|path>``."""

from recipes.commands.hub_commands import push_main as main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
