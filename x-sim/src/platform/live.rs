//! The live feed: every message each way (device -> platform, platform -> device) and every
//! violation as it happens, on a bounded [`tokio::sync::broadcast`] channel that the HTTP
//! API's `GET /api/stream` turns into Server-Sent Events.
//!
//! Publishing never blocks and never fails the platform: with no listener an event is
//! dropped, and a listener that falls more than [`CAPACITY`] events behind loses the oldest
//! and is told how many (its receiver reports the lag). Payloads are the plain ones (decrypted
//! where they travel encrypted, marked `encrypted`); an auth reply's DeviceSecret is
//! `[redacted]`, and violations come from the log, which has their secrets taken out already.

use serde_json::{Value, json};
use tokio::sync::broadcast;
use x_protocol::{DeviceIdentity, Frame, HeaderCtrl, Topic};

use super::now_ms;
use super::violations::Violation;

/// How many events a listener may fall behind before it loses the oldest.
pub const CAPACITY: usize = 1024;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a device to the platform.
    Up,
    /// From the platform to a device.
    Down,
}

impl Direction {
    /// `"up"` or `"down"`, as the stream names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// One event of the live feed.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// The device it is about (`None` when the topic names none).
    pub device: Option<DeviceIdentity>,
    /// What happened.
    pub kind: LiveKind,
    /// Its JSON, as the stream sends it (`product_id` and `node_eui` included).
    pub data: Value,
}

/// What a [`LiveEvent`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKind {
    /// A message, either way.
    Message,
    /// A rule a device broke.
    Violation,
}

impl LiveKind {
    /// The SSE event name: `"message"` or `"violation"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Violation => "violation",
        }
    }
}

/// The sending side of the live feed. Cheap to clone; clones share the channel.
#[derive(Debug, Clone)]
pub struct Live {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    /// A feed with no listeners yet.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }

    /// A new listener, which sees the events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// Publishes an event; with nobody listening it is dropped (never blocks).
    fn send(&self, event: LiveEvent) {
        let _ = self.tx.send(event);
    }

    /// Whether anybody listens (so that events are not built for nobody).
    pub(crate) fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A message on `topic`: `frame` as it travelled and `plain`, its payload before
    /// encryption (or after decryption).
    pub(crate) fn message(
        &self,
        direction: Direction,
        device: Option<&DeviceIdentity>,
        topic: &str,
        frame: &Frame,
        plain: &Value,
    ) {
        if !self.listened() {
            return;
        }
        let mut payload = plain.clone();
        if frame.header_ctrl == HeaderCtrl::Auth
            && let Some(secret) = payload.get_mut("DeviceSecret")
        {
            *secret = json!("[redacted]");
        }
        let device = device
            .cloned()
            .or_else(|| Topic::parse(topic).ok().and_then(|t| t.device().cloned()));
        let mut data = json!({
            "direction": direction.name(),
            "topic": topic,
            "HeaderCtrl": frame.header_ctrl.code(),
            "command": format!("{:?}", frame.header_ctrl),
            "MessageId": frame.message_id,
            "Payload": payload,
            "encrypted": frame.payload != *plain,
            "time": now_ms(),
        });
        name_device(&mut data, device.as_ref());
        self.send(LiveEvent {
            device,
            kind: LiveKind::Message,
            data,
        });
    }

    /// A message that is not a frame (a full-HEX report, an unreadable frame): its text.
    pub(crate) fn raw(&self, device: &DeviceIdentity, topic: &str, text: &str) {
        if !self.listened() {
            return;
        }
        let mut data = json!({
            "direction": Direction::Up.name(),
            "topic": topic,
            "HeaderCtrl": Value::Null,
            "command": Value::Null,
            "MessageId": Value::Null,
            "Payload": Value::Null,
            "raw": text,
            "encrypted": false,
            "time": now_ms(),
        });
        name_device(&mut data, Some(device));
        self.send(LiveEvent {
            device: Some(device.clone()),
            kind: LiveKind::Message,
            data,
        });
    }

    /// A violation, as the log recorded it.
    pub(crate) fn violation(&self, device: &DeviceIdentity, violation: &Violation) {
        if !self.listened() {
            return;
        }
        let mut data = violation.to_json();
        name_device(&mut data, Some(device));
        self.send(LiveEvent {
            device: Some(device.clone()),
            kind: LiveKind::Violation,
            data,
        });
    }
}

fn name_device(data: &mut Value, device: Option<&DeviceIdentity>) {
    data["product_id"] = json!(device.map(|d| d.product_id.as_str()));
    data["node_eui"] = json!(device.map(|d| d.node_eui.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use x_protocol::MessageId;

    #[test]
    fn nobody_listening_drops_and_a_lagging_listener_is_told() {
        let live = Live::new();
        let frame = Frame::new(MessageId::from(1u64), HeaderCtrl::Auth, json!({}));
        // No listener: nothing is built or kept.
        live.message(Direction::Down, None, "t", &frame, &json!({}));
        let mut rx = live.subscribe();
        for _ in 0..CAPACITY + 5 {
            live.message(
                Direction::Down,
                None,
                "t",
                &frame,
                &json!({"Code": 0, "DeviceSecret": "00112233"}),
            );
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(5))
        ));
        let event = rx.try_recv().expect("the newest are kept");
        assert_eq!(event.data["Payload"]["DeviceSecret"], "[redacted]");
        assert_eq!(event.data["direction"], "down");
    }
}
