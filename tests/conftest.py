"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py; they are collected here."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["fixtures.models", "fixtures.organism", "fixtures.browser"]
