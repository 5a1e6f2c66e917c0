"""Recorded data: bags (read, write, play, record, process through the node's per-frame code) and RGB-D
ground-truth samples (image folders, bags, procedural frames).

Imports the ROS layer's per-frame processor and codecs; training and the command line import it.
"""
