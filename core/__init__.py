"""The brain-tumour MRI pipeline: data, model, registry, training, evaluation, saliency.

Plain Python (no Streamlit). Layers, bottom to top:
  errors, config, images, dataset, registry   - no TensorFlow
  augment, model                              - Keras only (any backend)
  pipeline, cache                             - tf.data and Keras
  evaluate, train, inference, explain         - use the above
  launcher, cli                               - processes and the command line
"""
