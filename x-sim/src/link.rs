//! How the platform logic reaches the devices: through the embedded broker in-process
//! ([`BrokerHandle`]), or as an MQTT client of an existing broker such as Mosquitto
//! ([`connect_client`], `x-sim serve --broker mqtt://HOST:PORT`).

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::broker::{BrokerHandle, Message};

/// Where the platform publishes.
pub trait Link: Send + Sync + 'static {
    /// Publishes `payload` on `topic` (QoS 1 where the link has QoS).
    fn publish(&self, topic: &str, payload: Vec<u8>);

    /// Closes a client's connection (a fault injection). Only the embedded broker can;
    /// returns whether the client was connected.
    fn drop_client(&self, client_id: &str) -> bool {
        let _ = client_id;
        false
    }
}

impl Link for BrokerHandle {
    fn publish(&self, topic: &str, payload: Vec<u8>) {
        BrokerHandle::publish(self, topic, payload);
    }

    fn drop_client(&self, client_id: &str) -> bool {
        BrokerHandle::drop_client(self, client_id)
    }
}

/// The platform as a client of an existing broker.
#[derive(Debug, Clone)]
pub struct ClientLink {
    client: AsyncClient,
}

impl Link for ClientLink {
    fn publish(&self, topic: &str, payload: Vec<u8>) {
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(target: "x_sim", "cannot publish on {topic}: {e}");
        }
    }
}

/// A broker address from `mqtt://HOST:PORT` (or `HOST:PORT`).
///
/// # Errors
/// A message naming what is wrong with `url`.
pub fn parse_broker_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("mqtt://").unwrap_or(url);
    if url.contains("://") && !url.starts_with("mqtt://") {
        return Err(format!(
            "{url:?}: only mqtt:// is supported (the simulator does not do TLS)"
        ));
    }
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("{url:?}: port {port:?} is not a number 0..65535"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((host.to_owned(), port))
}

/// Connects to an existing broker as client `client_id`, subscribes to `/sys/#`, and
/// returns the link and the messages it receives. Waits for the first CONNACK and SUBACK, so
/// a broker that is not there is an error here rather than a silent retry loop; afterwards
/// the connection is re-established on its own (and re-subscribed) if it drops.
///
/// # Errors
/// The broker refused or could not be reached within `timeout`.
pub async fn connect_client(
    host: &str,
    port: u16,
    client_id: &str,
    timeout: Duration,
) -> Result<(ClientLink, mpsc::Receiver<Message>), String> {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut events) = AsyncClient::new(options, 256);
    let (tx, rx) = mpsc::channel(crate::broker::IN_PROCESS_QUEUE);
    let subscribe = client.clone();
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    subscribe
                        .subscribe("/sys/#", QoS::AtLeastOnce)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("cannot connect to mqtt://{host}:{port}: {e}")),
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(format!(
                "no answer from mqtt://{host}:{port} within {timeout:?}"
            ));
        }
    }
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                // The platform is gone (its `Sim` dropped): leave the broker. Staying would
                // keep the client id, so a later platform of this process would be thrown
                // off by this connection's reconnects, and it by the later one's.
                () = tx.closed() => return,
                event = events.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let message = Message {
                        topic: p.topic,
                        payload: Bytes::from(p.payload.to_vec()),
                        from: None,
                        login: None,
                    };
                    // A busy platform: the client stops polling (backpressure).
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // A new session after a reconnect: subscribe again.
                    let _ = subscribe.try_subscribe("/sys/#", QoS::AtLeastOnce);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "x_sim", "broker connection lost: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    Ok((ClientLink { client }, rx))
}

#[cfg(test)]
mod tests {
    use super::parse_broker_url;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884"),
            Ok(("127.0.0.1".into(), 1884))
        );
        assert_eq!(
            parse_broker_url("localhost"),
            Ok(("localhost".into(), 1883))
        );
        assert!(
            parse_broker_url("mqtts://h:1")
                .unwrap_err()
                .contains("only mqtt://")
        );
        assert!(
            parse_broker_url("mqtt://h:x")
                .unwrap_err()
                .contains("port \"x\"")
        );
        assert!(
            parse_broker_url("mqtt://:1")
                .unwrap_err()
                .contains("no host")
        );
    }
}
