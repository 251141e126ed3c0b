//! The device runtime of the X platform SDK.
//!
//! Two layers, split like rumqttc's `MqttState` / `EventLoop`:
//! - [`session`]: the sans-IO device session, every protocol decision (login phases,
//!   credentials, SessionKeys and rotation, encryption, MessageIds, pending acks with
//!   deadlines, the answer to every platform command, time sync, reconnect pacing) with no
//!   sockets, no async runtime and no clock of its own;
//! - the driver (`Device`), a thin tokio + rumqttc loop that performs the session's effects
//!   and feeds it what the network and the clock say.

pub mod backoff;
mod device;
mod driver;
mod empty;
pub mod ota;
pub mod outbox;
mod redact;
pub mod session;
pub mod state_dir;
mod tls;

pub use device::{
    BrokerAddr, BrokerAddrError, Delivery, Device, DeviceBuilder, DeviceCounters, DeviceError,
    HexServiceFn, Request, ServiceFn, ServiceRequest,
};
pub use empty::{NoModel, NoProperties, NoServices};

pub use backoff::BackoffConfig;
pub use session::{
    Ack, ConnectionState, Counters, DeliveryError, DeviceConfig, Effect, Event, Firmware,
    LoginPhase, Now, Persisted, Refusal, Session, Ticket, Timing, Token, stored_message_id,
};
