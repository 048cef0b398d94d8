"""The data layer: reading images (core.data.images, core.data.dicom), the dataset's layout
and split (dataset, split), its audit, sources and shortcut score (audit, sources,
shortcut), getting it (fetch), and tf.data input pipelines (pipeline).

May import the base modules at core's top level (errors, io, config, intervals, ...) and
its own modules; never core.model or anything above.
"""
