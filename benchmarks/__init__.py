"""pytest-benchmark suites (forward, train_step, sampling) and the report script."""
