//! A real browser for the page tests: Debian's headless Chromium, driven over WebDriver by
//! its chromedriver, both started here on loopback and stopped when the `Browser` drops.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::process::{free_port, TempDir};

/// How long a page may take to show what a test waits for.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

/// `name`'s path from `variable`, else the first of `candidates` that exists.
fn program(variable: &str, candidates: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} not found: install Debian's chromium and chromium-driver (.ci/run does), \
                 or set {variable}",
                candidates[0]
            )
        })
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let chromium = program(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let chromedriver = program("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let profile = TempDir::new("chromium");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            // Its own process group, with the Chromium it starts: dropping the `Browser`
            // ends them all, whatever way the test ended.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // This machine's network is closed: Chromium's own background traffic is off
                // (else its refused connections slow every start), as are its sandbox (the
                // tests may run as root), GPU and first-run screens.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--window-size=1280,1000", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }),
        );
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let webdriver = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen; Chromium a moment to start.
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            match builder.connect(&webdriver).await {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!(
                    "no WebDriver session from {}: {error}",
                    chromedriver.display()
                ),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The path (and query) the browser is on.
    pub(crate) async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The text of the first element matching `css`, once there is one.
    pub(crate) async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.expect("text")
    }

    /// The first element matching `css`, once there is one.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.path().await),
        }
    }

    /// The texts of every element matching `css` (none: empty).
    pub(crate) async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.expect("find") {
            texts.push(element.text().await.expect("text"));
        }
        texts
    }

    /// Clicks the first element matching `css`, and waits for the page it leads to: a click
    /// returns before the navigation it starts, so what a test reads next could otherwise
    /// still be the old page.
    pub(crate) async fn click(&self, css: &str) {
        // A mark on the old page's window; a new page has a new window, without it.
        self.eval("window.__leaving = true; return null").await;
        self.element(css).await.click().await.expect("click");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let arrived = self
                .eval("return window.__leaving === undefined && document.readyState === 'complete'")
                .await;
            if arrived == serde_json::Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "clicking {css} led nowhere");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replaces the text of the input matching `css`.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.expect("input");
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// Chooses the option of value `value` in the select matching `css`.
    pub(crate) async fn select(&self, css: &str, value: &str) {
        let select = self.client.find(Locator::Css(css)).await.expect("select");
        select.select_by_value(value).await.expect("option");
    }

    /// What `script` (a function body) returns in the page.
    pub(crate) async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// A PNG of the window, `height` pixels tall, written to `path`.
    pub(crate) async fn screenshot(&self, path: &std::path::Path, height: u32) {
        self.client
            .set_window_size(1280, height)
            .await
            .expect("window size");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium outlives a killed chromedriver: end the whole group.
        // (`--`: without it, a negative process id reads as an option.)
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
