"""One worker of a search shared through optuna storage (run as a subprocess by
test_optuna_shared_storage.py): ``python shared_worker.py CONFIG_JSON OUTPUT_DIR``."""

from __future__ import annotations

import json
import sys
import time

from optuna_helpers import accuracy, latency

import autokd


def eval_func(model: dict) -> dict:
    time.sleep(0.05)  # a trial takes a while, so the two workers interleave
    if model["num_attention_heads"] == 8 and model["hidden_size"] == 128:
        raise RuntimeError("8 heads do not fit hidden_size 128")
    return {"accuracy": accuracy(model) - 0.002 * model["num_attention_heads"], "latency": latency(model)}


def main(config_json: str, output_dir: str) -> None:
    agent = autokd.AutoDistillation(lambda arch: dict(arch), json.loads(config_json))
    agent.show_progress = False
    agent.train_func = lambda model: model
    agent.eval_func = eval_func
    agent.search_loop(output_dir)
    advisor = agent.advisor
    print(json.dumps({"repeated": advisor.repeated_proposals, "skipped": advisor.skipped_proposals}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
