//! Harness for the full-stack tests (placeholder).
