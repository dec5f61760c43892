"""The `ovframe` command with the maskformer test fakes registered: what the torchrun test launches."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mf_fakes  # noqa: E402
from ovframe.cli import main  # noqa: E402
from ovframe.registry import get_registry  # noqa: E402

mf_fakes.add_to(get_registry())
raise SystemExit(main(sys.argv[1:]))
