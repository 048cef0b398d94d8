"""The evaluation layer: a run's test-set figures and calibration (core.evaluation.evaluate),
scores on external datasets (external), error analysis of its predictions (interpret)
and its model card (card).

May import the base modules at core's top level, core.data and core.model; never
core.explanation, core.training, core.serving or the command line.
"""
