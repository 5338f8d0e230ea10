"""The run directory (local path or gs://): its layout, config.json, class names,
checkpoints with checksums, the workdir lock, and restoring a step for serving. Train,
evaluate, predict and inference all read and write a run through this package."""
