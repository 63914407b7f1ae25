import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cli_helpers, shared with tests/tracking
