"""One training engine for every model: loop, checkpoints, resume, seeding."""
