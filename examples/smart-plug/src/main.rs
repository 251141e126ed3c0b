//! A smart plug's typed bindings, generated in build.rs from the platform's exported model,
//! turning device state into protocol frames and platform commands into typed requests.
//!
//! Run: `cargo run -p smart-plug-example`

// The whole generated module, in one line.
x_sdk::include_model!("smart-plug");

use x_sdk::model::{Date, ServiceFailure, ThingModel, ThingServices, ToPayload};
use x_sdk::protocol::payload::{PropertySet, ServiceCall};
use x_sdk::protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, Identifier, MessageIdSource, Topic, TopicKind,
};

/// The device side of the plug's services.
struct Relay {
    energy: f64,
}

impl SmartPlugServiceHandler for Relay {
    fn reset(&mut self, scope: ResetScope) -> Result<ResetOutput, ServiceFailure> {
        match scope {
            ResetScope::Key0 => {
                self.energy = 0.0;
                Ok(ResetOutput {
                    result: true,
                    reset_at: Date::now(),
                })
            }
            ResetScope::Key1 => Err("factory reset needs the button held for 5 s".into()),
        }
    }

    fn set_schedule(
        &mut self,
        on_at: Date,
        off_at: Date,
        _repeat: bool,
    ) -> Result<(), ServiceFailure> {
        if off_at <= on_at {
            return Err("offAt must be later than onAt".into());
        }
        Ok(())
    }
}

/// What the device does with one incoming frame: the ack it publishes, and on which topic.
fn handle(
    device: &DeviceIdentity,
    state: &mut SmartPlug,
    relay: &mut Relay,
    topic: &str,
    frame: &Frame,
) -> Result<(String, Frame), Box<dyn std::error::Error>> {
    let topic = Topic::parse_for(topic, device)?;
    let (ack_kind, ack) = match topic.kind() {
        TopicKind::PropertySet => {
            let set: PropertySet = frame.payload_as()?;
            let ack = match SmartPlug::decode_set(&set.params) {
                Ok(set) => {
                    state.apply(&set);
                    AckPayload::success(Some(set.to_payload().into()))
                }
                Err(rejected) => AckPayload::failure(rejected.to_string()),
            };
            (TopicKind::PropertySetAck, ack)
        }
        TopicKind::ServiceCall => {
            let call: ServiceCall = frame.payload_as()?;
            let ack = match SmartPlugService::decode(&call.service, &call.params) {
                Ok(call) => match call.dispatch(relay) {
                    Ok(outputs) => AckPayload::success(Some(outputs.into())),
                    Err(failure) => AckPayload::failure(failure.to_string()),
                },
                Err(rejected) => AckPayload::failure(rejected.to_string()),
            };
            (TopicKind::ServiceCallAck, ack)
        }
        other => return Err(format!("this example does not handle {other:?}").into()),
    };
    let ack_topic = match topic.identifier() {
        Some(id) => Topic::with_identifier(device.clone(), ack_kind, id.clone())?,
        None => Topic::new(device.clone(), ack_kind)?,
    };
    Ok((ack_topic.to_string(), Frame::ack_of(frame, &ack)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121")?;
    let ids = MessageIdSource::new();
    let mut state = SmartPlug {
        switch: true,
        power: 23.7,
        voltage: 220.4,
        current: 0.11,
        energy: 12.345,
        ..SmartPlug::default()
    };
    let mut relay = Relay { energy: 12.345 };

    // A full property report.
    let report = Frame::with_payload(
        ids.next_id(),
        HeaderCtrl::PropertyReport,
        &state.report().to_payload(),
    )?;
    let topic = Topic::new(device.clone(), TopicKind::PropertyReport)?;
    println!("{topic}\n  {}", String::from_utf8_lossy(&report.encode()));

    // An event.
    let overheat = OverheatEvent {
        temperature: 96.5,
        action: OverheatAction::PowerCut,
    };
    let event = Frame::with_payload(
        ids.next_id(),
        HeaderCtrl::EventReport,
        &overheat.to_payload(),
    )?;
    let topic = Topic::with_identifier(
        device.clone(),
        TopicKind::EventReport,
        Identifier::new(<OverheatEvent as x_sdk::model::ThingEvent>::IDENTIFIER)?,
    )?;
    println!("{topic}\n  {}", String::from_utf8_lossy(&event.encode()));

    // Platform commands, as they arrive, and the acks the device sends back.
    let prefix = device.topic_prefix();
    let incoming = [
        (
            format!("{prefix}/model/property/set"),
            r#"{"MessageId":192155183,"HeaderCtrl":20,"Payload":{"params":[{"identify":"countdown","value":"600"}]},"Version":"2.0"}"#,
        ),
        (
            format!("{prefix}/model/property/set"),
            r#"{"MessageId":192155184,"HeaderCtrl":20,"Payload":{"params":[{"identify":"power","value":"1"}]},"Version":"2.0"}"#,
        ),
        (
            format!("{prefix}/model/service/reset"),
            r#"{"MessageId":1231,"HeaderCtrl":21,"Payload":{"serviceIdentify":"reset","params":{"scope":1}},"Version":"2.0"}"#,
        ),
    ];
    for (topic, text) in incoming {
        let frame = Frame::decode(text.as_bytes())?;
        let (ack_topic, ack) = handle(&device, &mut state, &mut relay, &topic, &frame)?;
        println!(
            "{topic}\n  <- {text}\n{ack_topic}\n  -> {}",
            String::from_utf8_lossy(&ack.encode())
        );
    }
    println!("countdown is now {} s", state.countdown);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn property_set_is_applied_and_acked_on_set_ack() {
        let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
        let mut state = SmartPlug::default();
        let mut relay = Relay { energy: 0.0 };
        let frame = Frame::decode(
            br#"{"MessageId":"77","HeaderCtrl":20,"Payload":{"params":[{"identify":"childLock","value":"1"}]},"Version":"2.0"}"#,
        )
        .unwrap();
        let topic = format!("{}/model/property/set", device.topic_prefix());
        let (ack_topic, ack) = handle(&device, &mut state, &mut relay, &topic, &frame).unwrap();
        assert!(state.child_lock);
        assert_eq!(
            ack_topic,
            format!("{}/model/property/set_ack", device.topic_prefix())
        );
        assert_eq!(
            String::from_utf8(ack.encode()).unwrap(),
            r#"{"MessageId":"77","HeaderCtrl":20,"Payload":{"Code":"200","Msg":"SUCCESS","Data":{"childLock":1}},"Version":"2.0"}"#
        );
    }

    #[test]
    fn service_failure_is_a_4001_on_the_service_ack_topic() {
        let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
        let frame = Frame::decode(
            br#"{"MessageId":5,"HeaderCtrl":21,"Payload":{"serviceIdentify":"reset","params":{"scope":1}},"Version":"2.0"}"#,
        )
        .unwrap();
        let topic = format!("{}/model/service/reset", device.topic_prefix());
        let (ack_topic, ack) = handle(
            &device,
            &mut SmartPlug::default(),
            &mut Relay { energy: 1.0 },
            &topic,
            &frame,
        )
        .unwrap();
        assert_eq!(ack_topic, format!("{topic}/ack"));
        let ack = ack.ack().unwrap();
        assert_eq!(ack.code.as_str(), "4001");
        assert_eq!(ack.msg, "factory reset needs the button held for 5 s");
    }
}
