"""The explanation layer: saliency maps (core.explanation.explain) and their sanity check
on randomised copies of the model (sanity).

May import the base modules at core's top level, core.data and core.model; never
core.evaluation, core.training, core.serving or the command line.
"""
