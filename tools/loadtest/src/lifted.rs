//! The abuse limits, lifted: the throughput benchmarks flood on purpose from one address, which is exactly what
//! the limits refuse. Every benchmark but `attack` (which measures the limits) runs with them lifted, and says so.

use chat_shared::config::Config;

/// Far above anything a benchmark does.
const LIFTED: u32 = 1_000_000;

/// `config` with the chat rate limit, the frame budget and the per-address limits lifted, and a room cap of at
/// least `members`.
pub fn lifted(config: Config, members: usize) -> Config {
    Config {
        rate_limit_per_sec: LIFTED,
        rate_limit_burst: LIFTED,
        frame_rate_per_sec: LIFTED,
        frame_burst: LIFTED,
        connect_rate_per_ip: LIFTED,
        max_connections_per_ip: LIFTED as usize,
        max_room_members: members.max(config.max_room_members),
        ..config
    }
}
