//! Codec modules for moment: each module wraps one codec library behind a safe, pure-data
//! API (`push(input) -> outputs`) with bounded internal buffers.
//!
//! What lives here: decoders, encoders and resamplers, and nothing that does I/O, spawns tasks
//! or logs — the server decides threads, queues and what to print. Modules arrive with the
//! issues that need them (Speex/G.711 → AAC, H.264 renditions).
