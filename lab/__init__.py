"""Research worlds with known ground truth (the control lab): used by benchmarks and tests, never by the pipeline."""
