"""The controller under test lives in examples/clients/ (in your project: your own package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))
