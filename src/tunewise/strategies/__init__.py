"""Strategies of both families behind one verb: `fit(backend, task, ctx) -> Predictor`."""
