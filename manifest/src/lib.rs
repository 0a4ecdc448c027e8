//! convox.yml (placeholder; being written).
