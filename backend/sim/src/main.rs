//! The `exchange-sim` binary (skeleton).

fn main() {}
