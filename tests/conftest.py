"""Shared pytest setup: quiet TensorFlow, repository root on sys.path."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
