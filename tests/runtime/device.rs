//! The device runtime against the local platform (x-sim in-process, its own broker): the
//! generated smart plug as a product team writes it, through every command of the protocol,
//! plain and encrypted, registration types 0, 1 and 2, key rotation mid-stream, a dropped
//! connection, and refusals.
#![allow(clippy::unwrap_used)]

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
use crate::plug;

use std::time::Duration;

use crate::support;

use plug::{
    OverheatAction, OverheatEvent, ResetOutput, ResetScope, SmartPlug, SmartPlugReport,
    SmartPlugService, SmartPlugServiceHandler,
};
use serde_json::json;
use support::{WAIT, sim, wait_for};
use x_sdk::model::{Date, ServiceFailure};
use x_sdk::protocol::{DeviceIdentity, RegistrationType};
use x_sdk::runtime::{
    BackoffConfig, ConnectionState, DeliveryError, Device, DeviceBuilder, Refusal, Request,
};
use x_sim::platform::Command;
use x_sim::sim::Sim;

/// The plug's relay, as product code implements the generated handler trait.
#[derive(Default)]
struct Relay {
    resets: u32,
}

impl SmartPlugServiceHandler for Relay {
    fn reset(&mut self, scope: ResetScope) -> Result<ResetOutput, ServiceFailure> {
        match scope {
            ResetScope::Key0 => {
                self.resets += 1;
                Ok(ResetOutput {
                    result: true,
                    reset_at: Date::from_millis(1_700_000_000_000),
                })
            }
            ResetScope::Key1 => Err("factory reset needs the button held for 5 s".into()),
        }
    }

    fn set_schedule(&mut self, on_at: Date, off_at: Date, _: bool) -> Result<(), ServiceFailure> {
        if off_at <= on_at {
            return Err("offAt must be later than onAt".into());
        }
        Ok(())
    }
}

fn plug(
    sim: &Sim,
    product_id: &str,
    product_key: &str,
    node_eui: &str,
) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    let mut relay = Relay::default();
    Device::<SmartPlug, SmartPlugService>::builder(id, product_key.parse().unwrap())
        .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
        .unwrap()
        .backoff(BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            jitter: 1.0,
        })
        .ack_timeout(Duration::from_secs(3))
        .services(move |call: SmartPlugService| call.dispatch(&mut relay))
}

#[tokio::test]
async fn a_type_1_plug_goes_online_and_answers_every_command() {
    let sim = sim().await;
    let p = sim.platform();
    let dir = tempdir("type1");
    let device = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .state_dir(&dir)
    .firmware("HW1", "1.2.3")
    .settings(serde_json::from_value(json!({"interval": 60})).unwrap())
    .connect()
    .await
    .unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    // The DeviceSecret learnt in the auth phase is kept.
    assert!(device.persisted().unwrap().unwrap().device_secret.is_some());

    // Reports and events resolve on the platform's ack.
    let ack = device
        .report(
            SmartPlugReport::default()
                .with_power(23.5)
                .with_switch(true),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.data, None);
    assert_eq!(p.latest_properties(&id)["power"].value, json!(23.5));
    device
        .event(&OverheatEvent {
            temperature: 96.5,
            action: OverheatAction::PowerCut,
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(p.events(&id).pop().unwrap().identifier, "overheat");
    // What the model refuses is not sent, and the state keeps the last good value.
    let refused = device
        .report(SmartPlugReport::default().with_power(99999.0))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, DeliveryError::Invalid(reason) if reason.contains("power: 99999 is above the maximum 3500")),
        "{refused}"
    );
    assert_eq!(device.state().power, 23.5);

    // Firmware was reported after the login, time was synced.
    let key = format!("{id}/default");
    wait_for(|| p.state("firmware", &key).is_some()).await;
    let fw = p.state("firmware", &key).unwrap();
    assert!(fw.to_string().contains("1.2.3"), "{fw}");
    wait_for(|| device.platform_time().is_some()).await;

    // Property set: coerced, applied, acked with the applied values, then told to the app.
    let answer = p
        .send_command(
            &id,
            Command::SetProperties(json!({"countdown": "600"})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.ack().unwrap().data, Some(json!({"countdown": 600})));
    assert_eq!(device.state().countdown, 600);
    next_matching(
        &device,
        |r| matches!(r, Request::PropertiesSet(s) if s.countdown == Some(600)),
    )
    .await;
    // A read-only property: 4001 from the model, the app never sees it.
    let answer = p
        .send_command(&id, Command::SetProperties(json!({"power": 1})), None)
        .await
        .unwrap();
    assert_eq!(answer.ack().unwrap().code.as_str(), "4001");

    // Property ask: answered from the state with the request's MessageId.
    let answer = p
        .send_command(
            &id,
            Command::AskProperties(vec!["power".into(), "countdown".into()]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.payload, json!({"power": 23.5, "countdown": 600}));

    // Service calls through the generated handler: outputs, and failures as 4001.
    let answer = p
        .send_command(
            &id,
            Command::CallService {
                service: "reset".into(),
                params: json!({"scope": 0}),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        answer.ack().unwrap().data,
        Some(json!({"result": 1, "resetAt": 1_700_000_000_000_i64}))
    );
    let answer = p
        .send_command(
            &id,
            Command::CallService {
                service: "reset".into(),
                params: json!({"scope": 1}),
            },
            None,
        )
        .await
        .unwrap();
    let ack = answer.ack().unwrap();
    assert_eq!(
        (ack.code.as_str(), ack.msg.as_str()),
        ("4001", "factory reset needs the button held for 5 s")
    );

    // Passthrough both ways.
    let answer = p
        .send_command(&id, Command::Passthrough(json!("AA55")), None)
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success());
    next_matching(
        &device,
        |r| matches!(r, Request::Passthrough(d) if *d == json!("AA55")),
    )
    .await;
    device
        .passthrough(json!("0102"))
        .await
        .unwrap()
        .await
        .unwrap();

    // Config ask and set (object, or JSON in a string).
    let answer = p.send_command(&id, Command::AskConfig, None).await.unwrap();
    assert_eq!(answer.payload, json!({"Settings": {"interval": 60}}));
    let answer = p
        .send_command(
            &id,
            Command::SetConfig(json!({"interval": 30, "mode": "eco"})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        answer.payload["Settings"],
        json!({"interval": 30, "mode": "eco"})
    );
    next_matching(&device, |r| matches!(r, Request::ConfigChanged(_))).await;

    // Firmware ask.
    let answer = p
        .send_command(&id, Command::AskFirmware, None)
        .await
        .unwrap();
    assert_eq!(answer.payload["SoftVer"], json!("1.2.3"));

    let counters = device.counters().session;
    assert_eq!(counters.bad_frames, 0, "{counters:?}");
    assert!(counters.acked >= 3, "{counters:?}");
    device.shutdown().await;
    wait_for(|| p.online(&id) == Some(false)).await;
}

#[tokio::test]
async fn an_encrypted_type_0_plug_registers_itself_and_survives_rotation_mid_stream() {
    let sim = sim().await;
    let p = sim.platform();
    let device = plug(
        &sim,
        "5E7A0B32",
        "00112233445566778899AABBCCDDEEFF",
        "ENC00001",
    )
    .registration(RegistrationType::ProductSecretUnregistered)
    .encrypted(true)
    .window(8)
    .connect()
    .await
    .unwrap();
    let id = sim.device("5E7A0B32", "ENC00001").unwrap();
    // Pipelined reports while the key rotates under them: every one is acked.
    let mut deliveries = Vec::new();
    for i in 0..40 {
        if i == 20 {
            p.rotate_key(&id).unwrap();
        }
        let report = SmartPlugReport::default().with_power(i as f32);
        deliveries.push(device.report(report).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    assert_eq!(device.counters().session.rotations, 1);
    next_matching(&device, |r| matches!(r, Request::KeyRotated)).await;
    // Commands arrive encrypted and are answered under the new key.
    let answer = p
        .send_command(&id, Command::SetProperties(json!({"childLock": 1})), None)
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success());
    assert!(device.state().child_lock);
    assert_eq!(p.latest_properties(&id)["power"].value, json!(39.0));
}

#[tokio::test]
async fn a_type_2_plug_logs_in_with_its_burned_in_secret() {
    let sim = sim().await;
    // x-sim's live feed sees auth requests (its received records do not keep them).
    let mut feed = sim.platform().live().subscribe();
    let device = plug(
        &sim,
        "2D2D2D2D",
        "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0",
        "PLUGT2",
    )
    .registration(RegistrationType::DeviceSecretPreRegistered)
    .device_secret("326086233FAB8A96566796551EB1DFF8".parse().unwrap())
    .connect()
    .await
    .unwrap();
    device.report_all().await.unwrap().await.unwrap();
    // No auth phase ran: the platform never saw an auth request from it.
    let id = sim.device("2D2D2D2D", "PLUGT2").unwrap();
    assert!(
        sim.platform()
            .received_from(&id)
            .iter()
            .all(|r| r.kind != x_sdk::protocol::TopicKind::Auth)
    );
    let mut messages = 0;
    while let Ok(event) = feed.try_recv() {
        if event.data["node_eui"] == "PLUGT2" {
            messages += 1;
            assert_ne!(event.data["topic"], "/sys/device/auth", "{}", event.data);
        }
    }
    assert!(
        messages >= 2,
        "the feed saw the device's messages: {messages}"
    );
}

#[tokio::test]
async fn a_dropped_connection_comes_back_and_reports_keep_flowing() {
    let sim = sim().await;
    let p = sim.platform();
    let device = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .connect()
    .await
    .unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    let mut states = device.connection();
    for round in 0..3 {
        assert!(p.drop_device(&id));
        // Offline with a bounded retry delay, then online again.
        let retry = tokio::time::timeout(WAIT, async {
            loop {
                states.changed().await.unwrap();
                if let ConnectionState::Offline { retry_in, .. } = states.borrow().clone() {
                    return retry_in;
                }
            }
        })
        .await
        .unwrap();
        assert!(retry <= Duration::from_secs(2), "{retry:?}");
        device.wait_online_for(WAIT).await.unwrap();
        device
            .report(SmartPlugReport::default().with_countdown(round))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(p.latest_properties(&id)["countdown"].value, json!(2));
    assert!(device.counters().session.connects >= 4);
}

#[tokio::test]
async fn refusals_are_typed_and_not_hammered() {
    let sim = sim().await;
    // An unknown product: the auth-phase CONNECT itself is refused.
    let err = plug(
        &sim,
        "0BADBEEF",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .connect()
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            x_sdk::runtime::DeviceError::Refused(Refusal::Connack {
                phase: x_sdk::runtime::LoginPhase::Auth,
                code: 4 | 5
            })
        ),
        "{err}"
    );
    // Wrong type for the product: code 5.
    let err = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .registration(RegistrationType::ProductSecretUnregistered)
    .connect()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Type does not match"), "{err}");
    // A wrong burned-in secret: CONNACK refusals back off to the cap, no storm.
    let device = plug(
        &sim,
        "2D2D2D2D",
        "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0",
        "PLUGT2",
    )
    .registration(RegistrationType::DeviceSecretPreRegistered)
    .device_secret("00000000000000000000000000000000".parse().unwrap())
    .start()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connects = device.counters().session.connects;
    // Cap 2 s, jitter at most half: at most one attempt per second after the first.
    assert!((2..=6).contains(&connects), "{connects} CONNECTs in 5 s");
    assert!(matches!(
        device.connection().borrow().clone(),
        ConnectionState::Refused {
            reason: Refusal::Connack { code: 4 | 5, .. },
            ..
        }
    ));
}

/// The next request that matches, skipping others (time sync notices and the like).
async fn next_matching(
    device: &Device<SmartPlug, SmartPlugService>,
    wanted: impl Fn(&Request<SmartPlug, SmartPlugService>) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            let request = device.next_request().await.unwrap();
            if wanted(&request) {
                return;
            }
        }
    })
    .await
    .unwrap();
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("x-sdk-runtime-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn services_answered_later_ota_notices_config_strings_and_hostile_frames() {
    let sim = sim().await;
    let p = sim.platform();
    // No handler: calls arrive as requests and are answered when ready, from another task.
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
    let device = Device::<SmartPlug, SmartPlugService>::builder(
        id.clone(),
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
    )
    .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
    .unwrap()
    .connect()
    .await
    .unwrap();
    let worker = device.clone();
    let answering = tokio::spawn(async move {
        loop {
            if let Some(Request::Service(mut req)) = worker.next_request().await {
                let call = req.take_call().unwrap();
                assert!(matches!(
                    call,
                    SmartPlugService::SetSchedule { repeat: true, .. }
                ));
                tokio::time::sleep(Duration::from_millis(300)).await;
                req.reply(Ok(serde_json::Map::new()));
                return;
            }
        }
    });
    let call = Command::CallService {
        service: "setSchedule".into(),
        params: json!({"onAt": 1, "offAt": 2, "repeat": 1}),
    };
    let answer = p.send_command(&id, call, None).await.unwrap();
    assert!(answer.ack().unwrap().code.is_success(), "{answer:?}");
    answering.await.unwrap();

    // An OTA notify is acked with its DownID and handed to the application.
    let notify = x_sdk::protocol::payload::OtaNotify {
        upgrade_type: 2,
        url: "http://127.0.0.1:1/fw.bin".into(),
        soft_ver: "1.5.0".into(),
        soft_size: 1024,
        md5: "0123456789abcdef0123456789abcdef".into(),
        down_id: "D-42".into(),
        firmware_name: Some("fw.bin".into()),
        module: None,
    };
    let answer = p
        .send_command(&id, Command::NotifyOta(notify), None)
        .await
        .unwrap();
    assert_eq!(answer.payload, json!({"DownID": "D-42"}));
    next_matching(
        &device,
        |r| matches!(r, Request::OtaNotify(n) if n.soft_ver == "1.5.0"),
    )
    .await;

    // Settings as JSON inside a string, as the vendor document shows it.
    let answer = p
        .send_command(&id, Command::SetConfig(json!("{\"mode\":\"eco\"}")), None)
        .await
        .unwrap();
    assert_eq!(answer.payload["Settings"], json!({"mode": "eco"}));

    // Hostile frames: wrong payload types, an unknown HeaderCtrl, an ack for nothing sent.
    let raw = |kind, header_ctrl, payload| Command::Raw {
        kind,
        identifier: None,
        header_ctrl,
        payload,
    };
    use x_sdk::protocol::{HeaderCtrl, TopicKind};
    for (kind, hc, payload) in [
        (
            TopicKind::PropertySet,
            HeaderCtrl::PropertySet,
            json!("not an object"),
        ),
        (
            TopicKind::PropertySet,
            HeaderCtrl::PropertySet,
            json!({"params": 5}),
        ),
        (TopicKind::PropertySet, HeaderCtrl::ServiceCall, json!({})),
    ] {
        let answer = p
            .send_command(&id, raw(kind, hc, payload), None)
            .await
            .unwrap();
        assert_eq!(answer.ack().unwrap().code.as_str(), "4001", "{answer:?}");
    }
    // An ask cannot be answered "4001" (its answer is a report): it is refused unanswered.
    let refused = device.counters().session.refused_commands;
    let ask = raw(
        TopicKind::PropertyAsk,
        HeaderCtrl::PropertyAsk,
        json!({"params": [1, 2]}),
    );
    let _ = p
        .send_command(&id, ask, Some(Duration::from_millis(300)))
        .await;
    assert_eq!(device.counters().session.refused_commands, refused + 1);
    let before = device.counters().session.bad_frames;
    let stray = raw(
        TopicKind::PropertyReportAck,
        HeaderCtrl::PropertyReport,
        json!({"Code": "200"}),
    );
    // Nothing answers a stray ack: the platform's wait times out.
    let _ = p
        .send_command(&id, stray, Some(Duration::from_millis(300)))
        .await;
    let unknown = raw(TopicKind::PropertySet, HeaderCtrl::Unknown(99), json!({}));
    let _ = p
        .send_command(&id, unknown, Some(Duration::from_millis(300)))
        .await;
    let downlink_garbage = raw(
        TopicKind::Downlink,
        HeaderCtrl::SessionKeyUpdate,
        json!({"x": 1}),
    );
    let _ = p
        .send_command(&id, downlink_garbage, Some(Duration::from_millis(300)))
        .await;
    wait_for(|| device.counters().session.bad_frames >= before + 3).await;
    // The device carries on.
    assert!(device.is_online());
    device.report_all().await.unwrap().await.unwrap();
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
    let err = Device::<SmartPlug, SmartPlugService>::builder(
        id,
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
    )
    .start()
    .unwrap_err();
    assert!(
        matches!(err, x_sdk::runtime::DeviceError::NoRuntime),
        "{err}"
    );
    // Bad broker addresses name what is wrong.
    for (addr, why) in [
        ("http://x:1", "scheme"),
        ("mqtt://:1883", "host is empty"),
        ("mqtt://h:99999", "port"),
    ] {
        let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
        let err = Device::<SmartPlug, SmartPlugService>::builder(
            id,
            "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
        )
        .broker(addr)
        .unwrap_err();
        assert!(
            err.to_string().contains(why) && err.to_string().contains(addr),
            "{err}"
        );
    }
}
