"""Golden data of the tests: event tables per (workload, technique), next to their reasoning."""
