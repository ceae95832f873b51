"""autokd's main job: compress the all-MiniLM-L6-v2 sentence encoder by AutoDistillation.

Run ``autokd-minilm`` (or ``python -m autokd_minilm``); see the repository README.
"""

__version__ = "0.1.0"
