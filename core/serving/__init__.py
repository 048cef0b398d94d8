"""The serving layer: classifying scans with a saved run (core.serving.inference), many
at once from folders, zips and multi-frame DICOM (batch), and one scan's report (scan_report).

May import the base modules at core's top level, core.data, core.model, core.evaluation
and core.explanation; never core.training or the command line.
"""
