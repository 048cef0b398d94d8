"""The brain-tumour MRI pipeline: data, model, registry, training, evaluation, saliency.

Plain Python (no Streamlit). Layers, bottom to top; a module imports from its own layer
and the layers below it, never from a layer above or beside it (tests/test_layers.py):

  core.errors, io, config, resolve,      the base: errors, atomic files, the training
  progress, intervals, calibration,      config, the run registry, statistics (no
  registry                               TensorFlow); they import no subpackage
  core.data, core.model                  the images and the dataset; the network, its
                                         augmentation and views, the OOD score
  core.evaluation, core.explanation      test-set figures and the model card; saliency
  core.training, core.serving            training runs; classifying scans. Training
                                         never imports serving, nor serving training
  core.cli (python -m core)              the command line, on top

Each subpackage's __init__ says what it holds and what it may import; none imports
anything, so callers import from the full module path (core.model.network).
"""
