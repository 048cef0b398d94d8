"""The brain-tumour MRI pipeline: data, model, registry, training, evaluation, saliency.

Plain Python (no Streamlit). Layers, bottom to top:
  errors, config, io, images, dataset, registry,
  intervals, audit, split, shortcut, progress  - no TensorFlow
  augment, model                              - Keras only (any backend)
  pipeline, cache                             - tf.data and Keras
  evaluate, external, train, inference,
  explain, sanity, ood, card                  - use the above
  launcher, cli                               - processes and the command line
"""
