"""One module per scenario, each with ``run(ctx) -> Outcome`` (async)."""
