//! Logging in against x-sim when the platform makes it hard: "platform busy" for the first
//! auth requests, auth replies withheld, a wrong password for a whole minute (CONNECTs
//! counted at the broker), and the encrypted type-2 product (burned-in DeviceSecret, auth
//! phase for the session only).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use x_sdk::protocol::{DeviceIdentity, HeaderCtrl, RegistrationType, TopicKind};
use x_sdk::runtime::{BackoffConfig, ConnectionState, Device, DeviceBuilder, LoginPhase, Refusal};
use x_sim::platform::{Command, LiveEvent};
use x_sim::sim::Sim;

use crate::plug::{OverheatAction, OverheatEvent, SmartPlug, SmartPlugReport, SmartPlugService};
use crate::support::{WAIT, sim};

/// A smart-plug device of the tests' OpenID, reconnects paced by `backoff`.
fn plug(
    sim: &Sim,
    product_id: &str,
    product_key: &str,
    node_eui: &str,
    backoff: BackoffConfig,
) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    Device::<SmartPlug, SmartPlugService>::builder(id, product_key.parse().unwrap())
        .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
        .unwrap()
        .backoff(backoff)
        .ack_timeout(Duration::from_secs(3))
}

/// No jitter: every delay is the configured one.
fn exact(base: Duration, cap: Duration) -> BackoffConfig {
    BackoffConfig {
        base,
        cap,
        jitter: 0.0,
    }
}

/// The codes of the auth replies x-sim sent to `node_eui`, from its live feed.
fn auth_reply_codes(
    feed: &mut tokio::sync::broadcast::Receiver<LiveEvent>,
    node_eui: &str,
) -> Vec<i64> {
    let mut codes = Vec::new();
    while let Ok(event) = feed.try_recv() {
        let d = &event.data;
        if d["direction"] == "down"
            && d["HeaderCtrl"] == HeaderCtrl::Auth.code()
            && d["node_eui"] == node_eui
        {
            codes.push(d["Payload"]["Code"].as_i64().unwrap());
        }
    }
    codes
}

#[tokio::test]
async fn connect_waits_through_platform_busy_and_gets_online() {
    let sim = sim().await;
    let p = sim.platform();
    let mut feed = p.live().subscribe();
    // x-sim answers the first three auth requests "busy" (code 1), then as the registry says.
    p.faults().set_busy_auths(3);
    let starting = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
        exact(Duration::from_millis(100), Duration::from_secs(2)),
    );
    let device = tokio::time::timeout(WAIT, starting.connect())
        .await
        .expect("online in time")
        .expect("busy is retried, not an error");
    assert!(device.is_online());
    assert_eq!(p.faults().busy_auths(), 0);
    // x-sim's side: three "busy" answers, then the one with the DeviceSecret.
    assert_eq!(auth_reply_codes(&mut feed, "PLUG0001"), [1, 1, 1, 0]);
    // The device's side: four auth-phase connections and the V2 login; no reconnect yet.
    let counters = device.counters().session;
    assert_eq!(counters.connects, 5, "{counters:?}");
    assert_eq!(counters.reconnects, 0, "{counters:?}");
    device.report_all().await.unwrap().await.unwrap();

    // A refusal retrying cannot fix still ends connect() with its typed error.
    let err = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
        exact(Duration::from_millis(100), Duration::from_secs(2)),
    )
    .registration(RegistrationType::ProductSecretUnregistered)
    .connect()
    .await
    .unwrap_err();
    assert!(
        matches!(&err, x_sdk::runtime::DeviceError::Refused(Refusal::Auth(code)) if !code.is_retryable()),
        "{err}"
    );
}

#[tokio::test]
async fn withheld_auth_replies_time_out_and_are_retried_until_the_platform_answers() {
    let sim = sim().await;
    let p = sim.platform();
    let mut feed = p.live().subscribe();
    p.faults().set_silent(true);
    let device = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
        exact(Duration::from_millis(200), Duration::from_secs(2)),
    )
    .auth_timeout(Duration::from_millis(800))
    .start()
    .unwrap();
    let mut states = device.connection();
    let connecting = {
        let device = device.clone();
        tokio::spawn(async move { device.wait_online().await })
    };
    // Authenticating, then offline once the auth timeout passes, then the auth phase again;
    // twice. (The watch keeps the latest state; each of these lasts long enough to be seen:
    // authenticating for the auth timeout, offline for the backoff delay.)
    let mut seen = Vec::new();
    let timed_out = |s: &ConnectionState| matches!(s, ConnectionState::Offline { reason, .. } if reason.contains("no auth reply in time"));
    tokio::time::timeout(WAIT, async {
        loop {
            states.changed().await.unwrap();
            let state = states.borrow_and_update().clone();
            let retried = !matches!(state, ConnectionState::Offline { .. });
            seen.push(state);
            if retried && seen.iter().filter(|s| timed_out(s)).count() == 2 {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no retry after the auth timeout: {seen:?}"));
    // The retry is the auth phase again.
    assert!(
        matches!(
            seen.last(),
            Some(
                ConnectionState::Connecting {
                    phase: LoginPhase::Auth,
                    attempt: 3
                } | ConnectionState::Authenticating
            )
        ),
        "{seen:?}"
    );
    let timeouts: Vec<&ConnectionState> = seen
        .iter()
        .filter(|s| matches!(s, ConnectionState::Offline { reason, .. } if reason.contains("no auth reply in time")))
        .collect();
    assert_eq!(timeouts.len(), 2, "{seen:?}");
    // Backoff: 200 ms, then 400 ms.
    let delays: Vec<Duration> = timeouts
        .iter()
        .map(|s| match s {
            ConnectionState::Offline { retry_in, .. } => *retry_in,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        delays,
        [Duration::from_millis(200), Duration::from_millis(400)]
    );
    assert!(seen.contains(&ConnectionState::Authenticating), "{seen:?}");
    assert!(
        !connecting.is_finished(),
        "wait_online gave up on a timeout"
    );

    // The platform answers again: the device gets online, and wait_online with it.
    p.faults().set_silent(false);
    tokio::time::timeout(WAIT, connecting)
        .await
        .expect("online once the platform answers")
        .unwrap()
        .unwrap();
    assert!(device.is_online());
    // x-sim saw the auth requests whose replies it withheld, and answered the last one.
    let mut requests = 0;
    let mut replies = Vec::new();
    while let Ok(event) = feed.try_recv() {
        let d = &event.data;
        if d["HeaderCtrl"] == HeaderCtrl::Auth.code() && d["node_eui"] == "PLUG0001" {
            match d["direction"].as_str() {
                Some("up") => requests += 1,
                _ => replies.push(d["Payload"]["Code"].as_i64().unwrap()),
            }
        }
    }
    assert!(requests >= 3, "{requests} auth requests");
    assert_eq!(replies, [0], "only the last auth request was answered");
    device.report_all().await.unwrap().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_tried_at_the_backoff_pace_counted_at_the_broker_for_60_s() {
    const WINDOW: Duration = Duration::from_secs(60);
    // Refusals that retrying cannot fix wait for the cap; with no jitter, exactly the cap.
    const CAP: Duration = Duration::from_millis(3500);
    let sim = sim().await;
    let p = sim.platform();
    let id = sim.device("2D2D2D2D", "PLUGT2").unwrap();
    let device = plug(
        &sim,
        "2D2D2D2D",
        "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0",
        "PLUGT2",
        exact(Duration::from_millis(100), CAP),
    )
    .registration(RegistrationType::DeviceSecretPreRegistered)
    .device_secret("00000000000000000000000000000000".parse().unwrap())
    .start()
    .unwrap();
    // The window opens at the broker's first refusal of this device.
    let until = Instant::now() + WAIT;
    let first = loop {
        if let Some(&first) = p.refused_connects(&id).unwrap().first() {
            break first;
        }
        assert!(Instant::now() < until, "no refused CONNECT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep_until((first + WINDOW + Duration::from_millis(500)).into()).await;
    let refused: Vec<Duration> = p
        .refused_connects(&id)
        .unwrap()
        .iter()
        .map(|t| t.duration_since(first))
        .filter(|t| *t <= WINDOW)
        .collect();
    // One attempt at once, then one per cap: 60 / 3.5 = 17 more.
    let predicted = (WINDOW.as_millis() / CAP.as_millis()) as usize + 1;
    assert_eq!(predicted, 18);
    assert!(
        refused.len().abs_diff(predicted) <= 1,
        "{} refused CONNECTs in 60 s at the broker, the backoff predicts {predicted}: {refused:?}",
        refused.len()
    );
    // Each gap is the cap (plus a round trip), never shorter.
    for gap in refused.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= CAP - Duration::from_millis(50) && gap <= CAP + Duration::from_secs(1),
            "{gap:?} between two attempts: {refused:?}"
        );
    }
    assert!(matches!(
        device.connection().borrow().clone(),
        ConnectionState::Refused {
            reason: Refusal::Connack { code: 4, .. },
            retry_in
        } if retry_in == CAP
    ));
    device.shutdown().await;
}

#[tokio::test]
async fn an_encrypted_type_2_plug_gets_its_session_in_the_auth_phase_and_logs_in_with_its_secret() {
    let sim = sim().await;
    let p = sim.platform();
    let mut feed = p.live().subscribe();
    let dir = std::env::temp_dir().join(format!("x-sdk-type2enc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The same burned-in parameters at every start.
    let start = || {
        plug(
            &sim,
            "2E2E2E2E",
            "B1B2B3B4B5B6B7B8B9BABBBCBDBEBFB0",
            "PLUGT2E",
            exact(Duration::from_millis(100), Duration::from_secs(2)),
        )
        .registration(RegistrationType::DeviceSecretPreRegistered)
        .device_secret("426086233FAB8A96566796551EB1DFF8".parse().unwrap())
        .encrypted(true)
        .state_dir(&dir)
        .connect()
    };
    let device = start().await.unwrap();
    let id = sim.device("2E2E2E2E", "PLUGT2E").unwrap();
    // The auth phase ran (for the session), and the session is kept.
    assert_eq!(auth_reply_codes(&mut feed, "PLUGT2E"), [0]);
    let persisted = device.persisted().unwrap().unwrap();
    assert_eq!(persisted.session, p.session_grant(&id));
    // Reports and events travel encrypted and are acked; commands come encrypted.
    device
        .report(SmartPlugReport::default().with_power(42.0))
        .await
        .unwrap()
        .await
        .unwrap();
    device
        .event(&OverheatEvent {
            temperature: 91.0,
            action: OverheatAction::PowerCut,
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(p.latest_properties(&id)["power"].value, json!(42.0));
    assert_eq!(p.events(&id).pop().unwrap().identifier, "overheat");
    let answer = p
        .send_command(&id, Command::SetProperties(json!({"countdown": 30})), None)
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success(), "{answer:?}");
    assert_eq!(device.state().countdown, 30);
    // x-sim saw every frame encrypted (it records plaintext from an encrypted product as
    // a violation) and nothing else wrong.
    let mut uplinks = 0;
    while let Ok(event) = feed.try_recv() {
        let d = &event.data;
        if d["direction"] == "up"
            && d["node_eui"] == "PLUGT2E"
            && d["HeaderCtrl"] != HeaderCtrl::Auth.code()
            && d["HeaderCtrl"] != HeaderCtrl::TimeSync.code()
        {
            uplinks += 1;
            assert_eq!(d["encrypted"], true, "{d}");
        }
    }
    assert!(uplinks >= 3, "{uplinks}");
    let violations = p.violations(&id);
    assert!(violations.is_empty(), "{violations:?}");
    assert!(
        p.received_from(&id)
            .iter()
            .any(|r| r.kind == TopicKind::PropertyReport)
    );
    // The next start needs no auth phase: the kept session and the burned-in secret do.
    device.shutdown().await;
    let again = start().await.unwrap();
    again.report_all().await.unwrap().await.unwrap();
    assert!(auth_reply_codes(&mut feed, "PLUGT2E").is_empty());
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
