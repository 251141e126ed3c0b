//! The resumable, verified download of one image: streamed into `<key>.part` in the state
//! directory's `ota/`, resumed with `Range: bytes=N-` (a server answering 200 instead of 206
//! restarts it cleanly from zero), never more than SoftSize bytes written, and renamed to
//! `<key>.bin` only once it is exactly SoftSize bytes with the notify's MD5. A partial file
//! never passes for a complete one, and is resumed only for the target it was begun for
//! (recorded in `<key>.json`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::{OtaConfig, OtaError, Update, parse_md5, write_atomic};
use crate::backoff::{Backoff, Jitter};

/// Where one module's download lives.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    /// The update being downloaded (so a restart can resume it).
    pub job: PathBuf,
    /// The bytes so far.
    pub part: PathBuf,
    /// The verified image.
    pub image: PathBuf,
}

impl Files {
    /// The files of `update` in `dir` (the state directory's `ota/`).
    pub fn of(dir: &Path, update: &Update) -> Self {
        let key = update.file_key();
        Self {
            job: dir.join(format!("{key}.json")),
            part: dir.join(format!("{key}.part")),
            image: dir.join(format!("{key}.bin")),
        }
    }

    /// Removes all of them.
    pub fn remove(&self) {
        for p in [&self.job, &self.part, &self.image] {
            let _ = fs::remove_file(p);
        }
    }
}

/// Progress of a download, reported about every 5 %.
pub(crate) trait Progress: Send {
    /// A download starts with `from` bytes already held.
    fn started(&mut self, from: u64, total: u64);
    /// `done` of `total` bytes are held.
    fn progress(&mut self, done: u64, total: u64);
}

/// How one attempt ended, when it did not end with the whole image.
enum Attempt {
    /// Try again from what is held (network fault, short body, server error).
    Retry(String),
    /// Start again from zero (the server ignored or misread the range).
    Restart(String),
    /// Give up.
    Fail(OtaError),
}

/// Downloads `update` into `files`, resuming a partial file, and verifies it.
///
/// # Errors
/// [`OtaError::TooLarge`] before anything is written; [`OtaError::Oversize`],
/// [`OtaError::Digest`] (the partial file is removed: it cannot be trusted);
/// [`OtaError::Truncated`], [`OtaError::Network`] after the configured attempts (the
/// partial file stays, for the next notify or start to resume); [`OtaError::Http`] for a
/// refusal; [`OtaError::Io`].
pub(crate) async fn download(
    client: &reqwest::Client,
    update: &Update,
    files: &Files,
    config: &OtaConfig,
    progress: &mut dyn Progress,
    seed: u64,
) -> Result<(), OtaError> {
    if update.size > config.max_image_bytes {
        return Err(OtaError::TooLarge {
            size: update.size,
            max: config.max_image_bytes,
        });
    }
    let expected = parse_md5(&update.md5)?;
    let io = |what: &str, path: &Path, e: std::io::Error| {
        OtaError::Io(format!("{what} {}: {e}", path.display()))
    };
    // A partial file is resumed only for the target it was downloaded for, which the job
    // file records: bytes of another image (an earlier notify's, left after a network
    // failure) or of an unknown one are never mixed into this one.
    let recorded = fs::read(&files.job)
        .ok()
        .and_then(|b| serde_json::from_slice::<Update>(&b).ok());
    if !recorded.is_some_and(|r| r.same_target(update)) && files.part.exists() {
        tracing::info!(
            module = update.module_name(),
            version = %update.version,
            "a partial download of another target is discarded"
        );
        fs::remove_file(&files.part).map_err(|e| io("cannot remove", &files.part, e))?;
    }
    let job = serde_json::to_vec_pretty(update).map_err(|e| OtaError::Io(e.to_string()))?;
    write_atomic(&files.job, &job).map_err(OtaError::Io)?;
    let _ = fs::remove_file(&files.image);

    let mut backoff = Backoff::new(config.backoff);
    let mut jitter = Jitter::new(seed);
    let mut attempts = 0;
    let mut last = String::new();
    let mut first = true;
    loop {
        let held = fs::metadata(&files.part).map_or(0, |m| m.len());
        if held > update.size {
            // More than the image: not ours (an older update's), start again.
            fs::remove_file(&files.part).map_err(|e| io("cannot remove", &files.part, e))?;
            continue;
        }
        if held == update.size {
            return finish(update, files, &expected);
        }
        if attempts == config.attempts.max(1) {
            return Err(if last.starts_with("short body") {
                OtaError::Truncated {
                    got: held,
                    size: update.size,
                    attempts,
                }
            } else {
                OtaError::Network {
                    attempts,
                    reason: last,
                }
            });
        }
        if !first {
            tokio::time::sleep(backoff.next_delay(jitter.next())).await;
        }
        first = false;
        attempts += 1;
        progress.started(held, update.size);
        match attempt(client, update, files, config, held, progress).await {
            Ok(()) => {}
            Err(Attempt::Retry(reason)) => {
                tracing::warn!(
                    module = update.module_name(),
                    attempt = attempts,
                    "OTA download interrupted: {reason}"
                );
                last = reason;
            }
            Err(Attempt::Restart(reason)) => {
                tracing::warn!(
                    module = update.module_name(),
                    "OTA download starts again from zero: {reason}"
                );
                let _ = fs::remove_file(&files.part);
                last = reason;
            }
            Err(Attempt::Fail(e)) => {
                if matches!(e, OtaError::Oversize { .. }) {
                    let _ = fs::remove_file(&files.part);
                }
                return Err(e);
            }
        }
    }
}

/// One request: from `held` bytes to the end, appended to the partial file.
async fn attempt(
    client: &reqwest::Client,
    update: &Update,
    files: &Files,
    config: &OtaConfig,
    held: u64,
    progress: &mut dyn Progress,
) -> Result<(), Attempt> {
    let mut request = client.get(&update.url);
    if held > 0 {
        request = request.header(RANGE, format!("bytes={held}-"));
    }
    let send = tokio::time::timeout(config.stall_timeout, request.send());
    let mut response = match send.await {
        Err(_) => return Err(Attempt::Retry("no answer in time".into())),
        Ok(Err(e)) if e.is_builder() => {
            return Err(Attempt::Fail(OtaError::Url {
                url: update.url.clone(),
                reason: e.to_string(),
            }));
        }
        Ok(Err(e)) => return Err(Attempt::Retry(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let mut at = match status {
        StatusCode::PARTIAL_CONTENT if held > 0 => {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(range_start);
            if start != Some(held) {
                return Err(Attempt::Restart(format!(
                    "asked from byte {held}, the server answered {:?}",
                    response.headers().get(CONTENT_RANGE)
                )));
            }
            held
        }
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
            if held > 0 {
                tracing::info!(
                    module = update.module_name(),
                    "the server ignores Range: downloading from zero"
                );
            }
            0
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            return Err(Attempt::Restart(format!(
                "the server cannot serve from byte {held} (416)"
            )));
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Err(Attempt::Retry(format!("HTTP {}", s.as_u16())));
        }
        s => {
            return Err(Attempt::Fail(OtaError::Http {
                status: s.as_u16(),
                url: update.url.clone(),
            }));
        }
    };
    let io = |what: &str, e: std::io::Error| {
        Attempt::Fail(OtaError::Io(format!(
            "{what} {}: {e}",
            files.part.display()
        )))
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(at == 0)
        .open(&files.part)
        .map_err(|e| io("cannot open", e))?;
    file.seek(SeekFrom::Start(at))
        .map_err(|e| io("cannot seek in", e))?;
    file.set_len(at).map_err(|e| io("cannot truncate", e))?;
    let step = (update.size / 20).max(1);
    let mut reported = at;
    let result = loop {
        let chunk = tokio::time::timeout(config.stall_timeout, response.chunk()).await;
        let bytes = match chunk {
            Err(_) => break Err(Attempt::Retry("the body stalled".into())),
            Ok(Err(e)) => break Err(Attempt::Retry(error_chain(&e))),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(b))) => b,
        };
        let room = update.size - at;
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
        file.write_all(&bytes[..take])
            .map_err(|e| io("cannot write", e))?;
        at += take as u64;
        if take < bytes.len() {
            // Cut off at SoftSize while it streams: nothing past it is written.
            break Err(Attempt::Fail(OtaError::Oversize { size: update.size }));
        }
        if at / step != reported / step {
            reported = at;
            progress.progress(at, update.size);
        }
    };
    file.sync_data().map_err(|e| io("cannot sync", e))?;
    result?;
    if at < update.size {
        return Err(Attempt::Retry(format!(
            "short body: it ended at {at} of {} bytes",
            update.size
        )));
    }
    // The whole image arrived; a server that still had more to say sent too much.
    if response
        .chunk()
        .await
        .ok()
        .flatten()
        .is_some_and(|b| !b.is_empty())
    {
        return Err(Attempt::Fail(OtaError::Oversize { size: update.size }));
    }
    if reported != at {
        progress.progress(at, update.size);
    }
    Ok(())
}

/// Verifies the complete partial file and makes it the image.
fn finish(update: &Update, files: &Files, expected: &[u8; 16]) -> Result<(), OtaError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        OtaError::Io(format!("{what} {}: {e}", path.display()))
    };
    let mut file = File::open(&files.part).map_err(|e| io("cannot open", &files.part, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| io("cannot read", &files.part, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got: [u8; 16] = hasher.finalize().into();
    if &got != expected {
        let _ = fs::remove_file(&files.part);
        return Err(OtaError::Digest {
            expected: update.md5.clone(),
            got: hex::encode(got),
        });
    }
    fs::rename(&files.part, &files.image).map_err(|e| io("cannot rename", &files.part, e))?;
    Ok(())
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// An error with its sources, for the log and the event (reqwest's own text is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_starts_are_read() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
