"""Shared helpers of the core tests (a unique module name, so suites can run together)."""


def synthetic_metrics(arch):
    """A deterministic landscape: accuracy grows with size, latency too."""
    size = arch["hidden_size"] * arch["num_attention_heads"]
    return {"accuracy": 1 - 100.0 / size, "latency": size / 100.0}
