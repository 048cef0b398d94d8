"""The brain-tumour MRI pipeline: data, model, registry, training, evaluation, saliency.

Plain Python (no Streamlit). Layers, bottom to top:
  errors, config, images, dataset, registry   - no TensorFlow
  pipeline, model                             - tf.data and Keras
  evaluate, train, inference, explain         - use the above
  launcher, cli                               - processes and the command line
"""
