//! Test modules of the engine's one integration-test binary (`tests/engine.rs`).

mod app;
mod azurite;
mod moto;
mod slt;
