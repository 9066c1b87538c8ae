"""Hydra entry points, one per stage, and the ``counsel-align`` command."""

import logging

# On CPUs with AVX512-BF16, importing bitsandbytes tries a hub kernel and logs a warning when the optional `kernels`
# package is absent; bitsandbytes falls back to its own CPU kernel, so the line is noise on every command.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
