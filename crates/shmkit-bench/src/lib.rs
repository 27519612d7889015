//! Benchmarks only: see `benches/`. Run them with `cargo bench -p shmkit-bench`.
