//! OTA progress per device and module, kept in the `ota` state map (and the store): each
//! notify the platform sends under an OTA task is followed until the device reports the
//! task's version ([`OtaState::Succeeded`]) or it fails ([`OtaState::Failed`]: it reported
//! another version after acking, stayed silent past [`PlatformConfig::ota_deadline`] after
//! acking, or never acked). A firmware report of another version re-notifies only while the
//! task's notifies are not used up ([`PlatformConfig::ota_max_notifies`]); a task set again
//! starts over.
//!
//! [`PlatformConfig::ota_deadline`]: super::PlatformConfig::ota_deadline
//! [`PlatformConfig::ota_max_notifies`]: super::PlatformConfig::ota_max_notifies

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use x_protocol::DeviceIdentity;
use x_protocol::payload::{DEFAULT_MODULE, FirmwareReport, OtaNotify};

use super::{Answer, Command, CommandError, Platform, now_ms};
use crate::firmware::{HTTP_UPGRADE, OtaTask};

/// The failure of a device that acked a notify and then reported another version.
pub fn reported_instead(reported: &str, target: &str) -> String {
    format!("reported version {reported} instead of {target} after acking")
}

/// The failure of a device that acked a notify and reported nothing within the deadline.
pub const SILENT_AFTER_ACK: &str = "no firmware report within the deadline after acking";

/// The failure of a notify that got no ack.
pub const NOT_ACKED: &str = "notify not acked";

/// Where the OTA of one device's module stands. Serialized into the progress's JSON as
/// `"status"` (`notified`, `acked`, `succeeded`, `failed`) with the variant's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OtaState {
    /// A notify went out; its ack is awaited (until [`OtaProgress::deadline_ms`]).
    Notified {
        /// When (Unix ms).
        at_ms: i64,
    },
    /// The device acked the notify; its firmware report of the target version is awaited
    /// (until [`OtaProgress::deadline_ms`]).
    Acked {
        /// When the ack came (Unix ms).
        at_ms: i64,
    },
    /// The device reported the target version (after acking a notify of this task).
    Succeeded {
        /// The version it reported.
        version: String,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// The attempt failed: [`reported_instead`], [`SILENT_AFTER_ACK`] or [`NOT_ACKED`] (a
    /// bad answer to the notify: `"notify not acked: ..."`). Final once
    /// [`OtaProgress::notifies`] reached [`OtaProgress::max_notifies`].
    Failed {
        /// Why.
        reason: String,
        /// When (Unix ms).
        at_ms: i64,
    },
}

/// The OTA progress of one device's module: the latest notify and what came of it, over
/// every notify of the same task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaProgress {
    /// Where it stands.
    #[serde(flatten)]
    pub state: OtaState,
    /// The target version (the notify's `SoftVer`).
    #[serde(rename = "SoftVer")]
    pub target: String,
    /// The latest notify's `DownID`.
    #[serde(rename = "DownID")]
    pub down_id: String,
    /// The latest notify's `Url`.
    #[serde(rename = "Url")]
    pub url: String,
    /// The [`OtaTask::serial`] the notifies are under; `None` for a notify sent by hand
    /// ([`Platform::send_ota`]) for a version that is not the task's.
    pub task: Option<u64>,
    /// How many notifies went out for this task (to this device's module).
    pub notifies: u32,
    /// How many notifies firmware reports may cause for this task
    /// ([`PlatformConfig::ota_max_notifies`](super::PlatformConfig::ota_max_notifies) when
    /// it began).
    pub max_notifies: u32,
    /// When the device last acked a notify of this task (Unix ms), if it ever did.
    pub acked_at_ms: Option<i64>,
    /// Until when the ack ([`OtaState::Notified`]) or the report of the target version
    /// ([`OtaState::Acked`]) is awaited (Unix ms); `None` once it succeeded or failed.
    pub deadline_ms: Option<i64>,
    /// The reasons of every failed notify of this task so far, oldest first.
    pub failures: Vec<String>,
}

impl OtaProgress {
    /// Reads a value of the `ota` state map (`None` for one written before these states).
    pub fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// Its JSON, as the state map and the HTTP API hold it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether this follows `task` as it is set now.
    pub fn is_of(&self, task: &OtaTask) -> bool {
        self.task == Some(task.serial) && self.target == task.version
    }

    /// Whether the attempt is over with no notify left to send for it.
    pub fn is_final(&self) -> bool {
        matches!(self.state, OtaState::Failed { .. }) && self.notifies >= self.max_notifies
    }

    fn first(notify: &OtaNotify, task: Option<u64>, max: u32, now: i64, ack_by: i64) -> Self {
        Self {
            state: OtaState::Notified { at_ms: now },
            target: notify.soft_ver.clone(),
            down_id: notify.down_id.clone(),
            url: notify.url.clone(),
            task,
            notifies: 1,
            max_notifies: max,
            acked_at_ms: None,
            deadline_ms: Some(ack_by),
            failures: Vec::new(),
        }
    }

    fn again(mut self, notify: &OtaNotify, now: i64, ack_by: i64) -> Self {
        self.state = OtaState::Notified { at_ms: now };
        self.down_id.clone_from(&notify.down_id);
        self.url.clone_from(&notify.url);
        self.notifies = self.notifies.saturating_add(1);
        self.deadline_ms = Some(ack_by);
        self
    }

    fn acked(&mut self, now: i64, deadline: i64) {
        self.state = OtaState::Acked { at_ms: now };
        self.acked_at_ms = Some(now);
        self.deadline_ms = Some(deadline);
    }

    fn fail(&mut self, reason: String, now: i64) {
        self.failures.push(reason.clone());
        self.state = OtaState::Failed { reason, at_ms: now };
        self.deadline_ms = None;
    }

    fn succeed(&mut self, version: &str, now: i64) {
        self.state = OtaState::Succeeded {
            version: version.to_owned(),
            at_ms: now,
        };
        self.deadline_ms = None;
    }

    /// What a firmware report of `reported` means for the attempt; whether it changed.
    fn reported(&mut self, reported: &str, now: i64) -> bool {
        match self.state {
            OtaState::Succeeded { .. } => false,
            _ if reported == self.target => {
                // Success is the target version reported after acking a notify.
                let acked = self.acked_at_ms.is_some();
                if acked {
                    self.succeed(reported, now);
                }
                acked
            }
            OtaState::Acked { .. } => {
                self.fail(reported_instead(reported, &self.target), now);
                true
            }
            _ => false,
        }
    }

    /// Whether a report of `reported` under `task` (this progress's) asks for another
    /// notify: the device does not run the target, no notify is awaiting its ack, and the
    /// task's notifies are not used up.
    fn wants_another(&self, reported: &str) -> bool {
        reported != self.target
            && matches!(
                self.state,
                OtaState::Failed { .. } | OtaState::Succeeded { .. }
            )
            && self.notifies < self.max_notifies
    }
}

/// How long after now a notify sent now may be acked: the command timeout, the reply delay
/// in force, and a second of slack (the wait for the ack fails it at its own timeout; this
/// is the backstop, e.g. for a notify withheld by fault injection or one of a platform that
/// restarted meanwhile).
fn ack_by(now: i64, timeout: Duration, delay: Duration) -> i64 {
    let ms = (timeout + delay + Duration::from_secs(1)).as_millis();
    now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn after(now: i64, d: Duration) -> i64 {
    now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Platform {
    /// The OTA progress of a device's module (default "default"), if a notify was ever sent
    /// for it.
    pub fn ota_progress(
        &self,
        device: &DeviceIdentity,
        module: Option<&str>,
    ) -> Option<OtaProgress> {
        let key = format!("{device}/{}", module.unwrap_or(DEFAULT_MODULE));
        OtaProgress::from_value(&self.state("ota", &key)?)
    }

    /// Keeps a device's reported firmware, resolves the OTA in progress for that module
    /// (succeeded, or failed after acking) and decides whether a notify goes out under the
    /// product's OTA task: for a report of another version than the task's, when no notify
    /// of the task is awaiting its ack and the task's notifies are not used up. The notify
    /// is recorded here (`notified`), before it is sent. The store writes of the state it
    /// changes are added to `durable`: the report's ack waits for them.
    pub(super) fn firmware_reported(
        &self,
        device: &DeviceIdentity,
        payload: &Value,
        durable: &mut Vec<super::data::Durable>,
    ) -> Option<OtaNotify> {
        let report: FirmwareReport = serde_json::from_value(payload.clone()).ok()?;
        let module = report
            .module
            .clone()
            .unwrap_or_else(|| DEFAULT_MODULE.to_owned());
        let key = format!("{device}/{module}");
        durable.extend(self.put_state("firmware", &key, payload));
        let product = device.product_id.as_str();
        let firmware = self.inner.firmware.as_ref();
        let task = firmware.and_then(|f| f.task(product, &module));
        let base = self.inner.config.firmware_url.as_deref();
        let config = &self.inner.config;
        let delay = self.inner.faults.delay();
        let mut notify = None;
        // The new value of the state when the progress changed.
        let changed_to = |changed: bool, p: Option<&OtaProgress>| {
            p.filter(|_| changed).map(OtaProgress::to_value)
        };
        let written = self.inner.data.update_state("ota", &key, |current| {
            let now = now_ms();
            let mut progress = current.and_then(OtaProgress::from_value);
            let changed = progress
                .as_mut()
                .is_some_and(|p| p.reported(&report.soft_ver, now));
            if let Some(p) = &progress {
                log_change(&key, p, changed);
            }
            let (Some(task), Some(base), Some(firmware)) = (&task, base, firmware) else {
                return changed_to(changed, progress.as_ref());
            };
            let ours = progress.as_ref().filter(|p| p.is_of(task));
            let wanted = report.upgrade_type == HTTP_UPGRADE
                && match ours {
                    Some(p) => p.wants_another(&report.soft_ver),
                    None => report.soft_ver != task.version && config.ota_max_notifies > 0,
                };
            if !wanted {
                if let Some(p) = ours.filter(|p| p.is_final() && changed) {
                    tracing::warn!(
                        target: "x_sim",
                        "OTA {key}: {} notifies used up, no more for task {} ({})",
                        p.notifies, task.serial, task.version
                    );
                }
                return changed_to(changed, progress.as_ref());
            }
            let Some(next) = firmware.task_notify(base, product, &module) else {
                return changed_to(changed, progress.as_ref());
            };
            let deadline = ack_by(now, config.command_timeout, delay);
            let updated = match progress.take().filter(|p| p.is_of(task)) {
                Some(p) => p.again(&next, now, deadline),
                None => OtaProgress::first(
                    &next,
                    Some(task.serial),
                    config.ota_max_notifies,
                    now,
                    deadline,
                ),
            };
            tracing::info!(
                target: "x_sim",
                "OTA {key}: notify {} of {} for {} (DownID {})",
                updated.notifies, updated.max_notifies, updated.target, updated.down_id
            );
            notify = Some(next);
            Some(updated.to_value())
        });
        durable.extend(written);
        notify
    }

    /// Sends a notify decided by a firmware report (already recorded as `notified`) and
    /// follows its ack.
    pub(super) async fn notify_ota(&self, device: &DeviceIdentity, notify: OtaNotify) {
        if let Err(e) = self.deliver_ota(device, notify, None).await {
            tracing::warn!(target: "x_sim", "OTA notify to {device}: {e}");
        }
    }

    /// Sends an OTA notify now, whatever version the device runs and however many notifies
    /// its task already had (an explicit push is never refused), and waits for the device's
    /// `{DownID}`. The progress is kept per device and module in the `ota` state map (see
    /// [`OtaProgress`]): `notified`, then `acked` (or `failed`: "notify not acked"), then
    /// `succeeded` once the device reports the target version, or `failed`. A notify of the
    /// product's task counts among that task's notifies; one for another version starts a
    /// progress of its own.
    ///
    /// # Errors
    /// As [`Platform::send_command`].
    pub async fn send_ota(
        &self,
        device: &DeviceIdentity,
        notify: OtaNotify,
        timeout: Option<Duration>,
    ) -> Result<Answer, CommandError> {
        let key = format!("{device}/{}", notify.module());
        let task = self
            .inner
            .firmware
            .as_ref()
            .and_then(|f| f.task(device.product_id.as_str(), notify.module()))
            .filter(|t| t.version == notify.soft_ver);
        let wait = timeout.unwrap_or(self.inner.config.command_timeout);
        let delay = self.inner.faults.delay();
        let max = self.inner.config.ota_max_notifies;
        self.update_state("ota", &key, |current| {
            let now = now_ms();
            let deadline = ack_by(now, wait, delay);
            let same = |p: &OtaProgress| {
                p.target == notify.soft_ver && p.task == task.as_ref().map(|t| t.serial)
            };
            let progress = match current.and_then(OtaProgress::from_value).filter(same) {
                Some(p) => p.again(&notify, now, deadline),
                None => OtaProgress::first(&notify, task.map(|t| t.serial), max, now, deadline),
            };
            Some(progress.to_value())
        });
        self.deliver_ota(device, notify, timeout).await
    }

    /// Sends a recorded notify and waits for its ack: `acked` (if the ack did not already
    /// make it so), or `failed` with "notify not acked".
    async fn deliver_ota(
        &self,
        device: &DeviceIdentity,
        notify: OtaNotify,
        timeout: Option<Duration>,
    ) -> Result<Answer, CommandError> {
        let key = format!("{device}/{}", notify.module());
        let down_id = notify.down_id.clone();
        let result = self
            .send_command(device, Command::NotifyOta(notify), timeout)
            .await;
        let outcome = match &result {
            Ok(_) => None,
            Err(CommandError::Timeout { .. }) => Some(NOT_ACKED.to_owned()),
            Err(e) => Some(format!("{NOT_ACKED}: {e}")),
        };
        let deadline = self.inner.config.ota_deadline;
        // Only this notify's progress, and only while it awaits its ack.
        self.update_state("ota", &key, |current| {
            let mut p = current.and_then(OtaProgress::from_value)?;
            if p.down_id != down_id || !matches!(p.state, OtaState::Notified { .. }) {
                return None;
            }
            let now = now_ms();
            match outcome {
                None => p.acked(now, after(now, deadline)),
                Some(reason) => p.fail(reason, now),
            }
            log_change(&key, &p, true);
            Some(p.to_value())
        });
        result
    }

    /// A device's OTA ack (HeaderCtrl 9 on `ota_notify_ack`) as it is handled: the progress
    /// of the module whose notify it answers becomes `acked`, before anything the device
    /// sends next is handled.
    pub(super) fn ota_acked(&self, device: &DeviceIdentity, payload: &Value) {
        let down_id = match payload.get("DownID") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return,
        };
        let prefix = format!("{device}/");
        let key = self
            .state_map("ota")
            .into_iter()
            .find(|(k, v)| {
                k.starts_with(&prefix) && v.get("DownID").and_then(Value::as_str) == Some(&down_id)
            })
            .map(|(k, _)| k);
        let Some(key) = key else { return };
        let deadline = self.inner.config.ota_deadline;
        self.update_state("ota", &key, |current| {
            let mut p = current.and_then(OtaProgress::from_value)?;
            if p.down_id != down_id || !matches!(p.state, OtaState::Notified { .. }) {
                return None;
            }
            let now = now_ms();
            p.acked(now, after(now, deadline));
            log_change(&key, &p, true);
            Some(p.to_value())
        });
    }

    /// Fails every OTA whose deadline passed: an ack that never came ([`NOT_ACKED`]), or no
    /// report after the ack ([`SILENT_AFTER_ACK`]). Checked about ten times per deadline
    /// (between 10 ms and 1 s apart); deadlines are wall-clock times, so they hold across a
    /// restart with a store.
    pub(super) fn watch_ota_deadlines(self) -> tokio::task::JoinHandle<()> {
        let period = (self.inner.config.ota_deadline / 10)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = now_ms();
                let due: Vec<String> = self
                    .state_map("ota")
                    .into_iter()
                    .filter(|(_, v)| {
                        OtaProgress::from_value(v).is_some_and(|p| {
                            matches!(p.state, OtaState::Notified { .. } | OtaState::Acked { .. })
                                && p.deadline_ms.is_some_and(|d| d <= now)
                        })
                    })
                    .map(|(k, _)| k)
                    .collect();
                for key in due {
                    self.update_state("ota", &key, |current| {
                        let mut p = current.and_then(OtaProgress::from_value)?;
                        let reason = match p.state {
                            OtaState::Notified { .. } => NOT_ACKED,
                            OtaState::Acked { .. } => SILENT_AFTER_ACK,
                            _ => return None,
                        };
                        if p.deadline_ms.is_none_or(|d| d > now) {
                            return None;
                        }
                        p.fail(reason.to_owned(), now);
                        log_change(&key, &p, true);
                        Some(p.to_value())
                    });
                }
            }
        })
    }
}

/// One log line for a change of an OTA's progress.
fn log_change(key: &str, p: &OtaProgress, changed: bool) {
    if !changed {
        return;
    }
    match &p.state {
        OtaState::Notified { .. } => {}
        OtaState::Acked { .. } => {
            tracing::info!(target: "x_sim", "OTA {key}: acked (DownID {})", p.down_id);
        }
        OtaState::Succeeded { version, .. } => {
            tracing::info!(target: "x_sim", "OTA {key}: succeeded, the device reports {version}");
        }
        OtaState::Failed { reason, .. } => {
            let left = p.max_notifies.saturating_sub(p.notifies);
            tracing::warn!(
                target: "x_sim",
                "OTA {key}: failed: {reason} (notify {} of {}, {left} left)",
                p.notifies, p.max_notifies
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use x_protocol::payload::OtaNotify;

    use super::{OtaProgress, OtaState, SILENT_AFTER_ACK, reported_instead};

    fn notify(down_id: &str) -> OtaNotify {
        OtaNotify {
            upgrade_type: 2,
            url: "http://h/f".into(),
            soft_ver: "1.0.2".into(),
            soft_size: 10,
            md5: "00".into(),
            down_id: down_id.into(),
            firmware_name: None,
            module: None,
        }
    }

    #[test]
    fn transitions() {
        let mut p = OtaProgress::first(&notify("A"), Some(4), 2, 100, 200);
        assert_eq!(p.state, OtaState::Notified { at_ms: 100 });
        // The old version reported while the ack is awaited: nothing changes, no notify.
        assert!(!p.reported("1.0.1", 110));
        assert!(!p.wants_another("1.0.1"));
        // The target reported without any ack: not a success.
        assert!(!p.reported("1.0.2", 115));
        p.acked(120, 500);
        assert_eq!(
            (p.state.clone(), p.deadline_ms),
            (OtaState::Acked { at_ms: 120 }, Some(500))
        );
        assert!(p.reported("1.0.1", 130));
        assert_eq!(
            p.state,
            OtaState::Failed {
                reason: reported_instead("1.0.1", "1.0.2"),
                at_ms: 130
            }
        );
        assert!(p.wants_another("1.0.1"));
        assert!(!p.wants_another("1.0.2"));
        let mut p = p.again(&notify("B"), 140, 300);
        assert_eq!((p.notifies, p.down_id.as_str()), (2, "B"));
        p.acked(150, 600);
        p.fail(SILENT_AFTER_ACK.to_owned(), 600);
        assert!(p.is_final());
        assert!(!p.wants_another("1.0.1"));
        // Even a final failure turns into success when the target is reported: it was acked.
        assert!(p.reported("1.0.2", 700));
        assert_eq!(
            p.state,
            OtaState::Succeeded {
                version: "1.0.2".into(),
                at_ms: 700
            }
        );
        assert_eq!(p.failures.len(), 2);
        assert!(!p.reported("1.0.1", 800));
    }

    #[test]
    fn json() {
        let mut p = OtaProgress::first(&notify("A"), Some(4), 3, 100, 200);
        p.acked(120, 500);
        let v = p.to_value();
        assert_eq!(v["status"], "acked");
        assert_eq!(v["at_ms"], 120);
        assert_eq!(v["SoftVer"], "1.0.2");
        assert_eq!(v["DownID"], "A");
        assert_eq!(v["task"], 4);
        assert_eq!(OtaProgress::from_value(&v), Some(p));
        // Progress written by older versions is not read as a state.
        assert_eq!(
            OtaProgress::from_value(&json!({"status": "done", "SoftVer": "1"})),
            None
        );
    }
}
