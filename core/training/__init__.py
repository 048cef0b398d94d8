"""The training layer: training a run (core.training.train) from its phases, feeds and
activation cache (phases, feeds, cache, cache_usage, loop, distribute), its lifecycle and
records (lifecycle, recorder), its out-of-distribution check (ood_fit), ensembles of runs
(ensemble), and training in a separate process (launcher).

May import the base modules at core's top level, core.data, core.model, core.evaluation
and core.explanation; never core.serving or the command line.
"""
