"""The ROS layer: the node (wiring only), its parameters, message codecs, the per-frame processor shared
with the bag tools, navigation messages, diagnostics and DDS settings.

Imports the core, the backends and the pipeline; the bag tools, training and the command line import it.
"""
