//! The tokio + rumqttc device runtime for the X platform: login, typed handlers, acks, key
//! rotation, history and OTA. Filled by the runtime issue; it builds on `x-protocol`.
