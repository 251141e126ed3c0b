//! A real browser for the console's tests: headless Chromium driven through chromedriver
//! (the Debian packages `chromium` and `chromium-driver`, which `.ci/run` installs), over
//! WebDriver with fantoccini. Waits poll the page's DOM, so they hold however slowly the
//! machine runs.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// How long the page gets for any one thing to appear.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium and the chromedriver that drives it; both stop when dropped, also
/// when a test panics (the browser's processes are in chromedriver's own process group, and
/// the whole group is killed: killing chromedriver alone left Chromium running, orphaned).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The shell's kill signals a process group (std signals one child only).
        let group = format!("kill -KILL -{}", self.driver.id());
        let _ = Command::new("sh").args(["-c", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium window of
    /// 1400 x 1700 pixels with a fresh profile.
    pub async fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the console tests need Chromium and chromedriver: \
             apt-get install -y chromium chromium-driver (as .ci/run does)"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // A group of its own, which the browser it starts joins: see `Drop`.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1700",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + PAGE_WAIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < until => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start a browser: {e}"),
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body with `arguments`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// The text of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .js(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Waits until some element matching `css` has text for which `ok` holds; that text.
    pub async fn until(&self, what: &str, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + PAGE_WAIT;
        loop {
            if let Some(t) = self.texts(css).await.into_iter().find(|t| ok(t)) {
                return t;
            }
            if Instant::now() > until {
                let body = self.js("return document.body.innerText;", vec![]).await;
                panic!(
                    "the page never showed {what} ({css}); it shows:\n{}",
                    body.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until at least `n` elements match `css`; how many do.
    pub async fn until_count(&self, what: &str, css: &str, n: usize) -> usize {
        let until = Instant::now() + PAGE_WAIT;
        loop {
            let count = self.texts(css).await.len();
            if count >= n {
                return count;
            }
            assert!(
                Instant::now() < until,
                "the page never showed {n} {what} ({css}): {count}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css` (after waiting for it).
    pub async fn click(&self, css: &str) {
        self.until(css, css, |_| true).await;
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Types `text` into the input matching `css` (for a file input: a local path).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.until(css, css, |_| true).await;
        let input = self
            .client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap();
        input.clear().await.unwrap_or(());
        input.send_keys(text).await.unwrap();
    }

    /// Chooses `value` in the `<select>` matching `css`, as a user does (change events fire).
    pub async fn select(&self, css: &str, value: &str) {
        self.until(css, css, |_| true).await;
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }

    /// Saves a screenshot of the window as `name`.png under the target directory, and, with
    /// `UPDATE_SCREENSHOTS=1`, into `docs/` (where the README shows them).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        // The window as tall as the page, so that the picture holds all of it.
        let height = self
            .js(
                "const m = document.querySelector('main') || document.body; \
                 return Math.ceil(m.getBoundingClientRect().bottom + window.scrollY);",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(1000);
        let height = u32::try_from((height + 100).clamp(500, 2400)).unwrap_or(1000);
        self.client.set_window_size(1400, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let out = root.join("target").join(format!("{name}.png"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, &png).unwrap();
        if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            std::fs::write(root.join("docs").join(format!("{name}.png")), &png).unwrap();
        }
        out
    }
}
