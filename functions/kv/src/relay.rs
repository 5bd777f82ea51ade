//! The `kv-outbox` schedule: publishes change events whose inline publish
//! failed. EventBridge Scheduler runs it every minute in AWS (the
//! `kv-outbox` function); `serve` runs it from the same expression. The
//! handler is the platform's [`constellation_platform::outbox::OutboxRelay`].

/// The schedule's name (and its Lambda binary).
pub const SCHEDULE: &str = "kv-outbox";
/// How often it runs: the `ScheduleExpression` of template.yaml's `KvOutboxFunction`.
pub const EXPRESSION: &str = "rate(1 minute)";
