//! Sweeps: grid YAML expansion into named cells, and running them (skip / resume / record diverged).
