//! The HTTP layer: routing (`router`).

pub mod router;
