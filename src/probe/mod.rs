//! Stability probe at initialization (forward and backward norm ratios).
