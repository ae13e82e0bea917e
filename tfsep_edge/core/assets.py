"""Files the package ships (package data, under tfsep_edge/assets): what a default run needs.

Found inside the installed package, never in a git checkout or a folder beside it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ASSETS = Path(str(files("tfsep_edge") / "assets"))
IMPULSE_RESPONSES = ASSETS / "micirp"  # the 66 MicIRP responses of the report's device simulation (README there)
DEMO_CALIBRATION = ASSETS / "calibration"  # 30 SYNTHETIC 1-s scenes: the demo's calibration set
