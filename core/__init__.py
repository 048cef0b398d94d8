"""The brain-tumour MRI pipeline: data, model, registry, training, evaluation, saliency.

Plain Python (no Streamlit). Layers, bottom to top:
  errors, config, resolve, io, images, dataset,
  registry, intervals, calibration, tta, audit,
  split, shortcut, progress, interpret        - no TensorFlow
  augment, model, phases                      - Keras only (any backend)
  pipeline, cache                             - tf.data and Keras
  evaluate, external, lifecycle, recorder,
  feeds, train, inference, explain, sanity,
  ood, card                                   - use the above; training and
                                                evaluation never import
                                                inference or batch (serving)
  launcher, cli                               - processes and the command line
"""
