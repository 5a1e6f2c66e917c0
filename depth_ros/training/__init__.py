"""The learning side's training: data sources (synthetic, teacher labels, sensor depth), losses, augmentation
and the resumable training loop. Imports the core, nets, synthetic scenes, backends, the pipeline and the
recorded-data layer; only the command line (``depth-ros train``) imports it."""
