//! The event loop's machinery that knows nothing of HTTP: fixed connection slots with their
//! intrusive lists (`slab`), the fixed buffer pools (`pool`), connections counted per client
//! address (`per_address`), and systemd's readiness protocol (`notify`). The loop itself (`crate::gate`) and the connections (`crate::server`) use them.
//!
//! Never: allocates after start, performs socket I/O, or knows what a request is.

pub mod notify;
pub mod per_address;
pub mod pool;
pub mod slab;
