"""The model layer: the classifier network (core.model.network), training-time
augmentation (augment), test-time views (tta) and the out-of-distribution score on the
network's features (ood). Keras without TensorFlow, or plain numpy.

May import the base modules at core's top level (errors, io, config, registry, ...) and
its own modules; never core.data or anything above.
"""
