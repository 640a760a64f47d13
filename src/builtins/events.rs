//! Event handlers: `LogEvent` logs the event through `CoProcessLog`; `RelayEvent` re-fires it
//! through `TykTriggerEvent` under a configured name with the event JSON, exactly as received,
//! as payload.

use crate::{ConfigError, Event, EventHandler, Host, LogLevel, MiddlewareError};

/// Configuration of [`LogEvent`]: `{"level": "info"}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogEventConfig {
    /// The level to log at.
    pub level: LogLevel,
}

impl Default for LogEventConfig {
    fn default() -> Self {
        LogEventConfig { level: LogLevel::Info }
    }
}

/// The `LogEvent` handler.
pub struct LogEvent {
    level: LogLevel,
}

impl EventHandler for LogEvent {
    const NAME: &'static str = "LogEvent";
    type Config = LogEventConfig;

    fn new(config: LogEventConfig) -> Result<Self, ConfigError> {
        Ok(LogEvent { level: config.level })
    }

    fn handle(&self, event: &Event<'_>, host: &dyn Host) -> Result<(), MiddlewareError> {
        host.log(self.level, &format!("gateway event {} for API {:?}: {}", event.event_type, event.api_id, event.raw));
        Ok(())
    }
}

/// Configuration of [`RelayEvent`]: `{"event_name": "..."}` (required).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayEventConfig {
    /// The name the event is re-fired under.
    pub event_name: Option<String>,
}

/// The `RelayEvent` handler.
pub struct RelayEvent {
    event_name: String,
}

impl EventHandler for RelayEvent {
    const NAME: &'static str = "RelayEvent";
    type Config = RelayEventConfig;

    fn new(config: RelayEventConfig) -> Result<Self, ConfigError> {
        match config.event_name {
            Some(name) if !name.is_empty() => Ok(RelayEvent { event_name: name }),
            _ => Err(ConfigError::new("event_name is required")),
        }
    }

    fn handle(&self, event: &Event<'_>, host: &dyn Host) -> Result<(), MiddlewareError> {
        host.trigger_event(&self.event_name, event.raw);
        Ok(())
    }
}
