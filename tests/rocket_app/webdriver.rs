//! A minimal W3C WebDriver client (blocking, HTTP/1.1 over a TCP socket),
//! enough to drive chromedriver: navigate, find, type, click, read,
//! screenshot, cookies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct WebDriver {
    port: u16,
    session: String,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect to chromedriver: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // chromedriver may keep the connection open: read the head, then
    // exactly the body its Content-Length (or chunking) announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("read from chromedriver: {e}"))?;
        if n == 0 {
            return Err("chromedriver closed the connection".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let done = match length {
            Some(len) => body.len() >= len,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("read from chromedriver: {e}"))?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let payload = if chunked { dechunk(&body)? } else { body };
    let value: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("chromedriver JSON: {e}"))?;
    if let Some(err) = value["value"].get("error") {
        return Err(format!(
            "{method} {path}: {err}: {}",
            value["value"]["message"]
        ));
    }
    Ok(value["value"].clone())
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .map_err(|e| e.to_string())?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

/// Decodes standard base64 (screenshots).
fn base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

impl WebDriver {
    /// A new headless Chromium session through chromedriver on `port`.
    pub fn start(port: u16, chromium: &str, profile_dir: &str) -> Result<Self, String> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1100,820",
                    format!("--user-data-dir={profile_dir}"),
                ],
            },
        }}});
        let value = http(port, "POST", "/session", Some(&caps))?;
        let session = value["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_owned();
        Ok(Self { port, session })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .map(drop)
    }

    pub fn url(&self) -> Result<String, String> {
        Ok(self
            .call("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub fn find(&self, css: &str) -> Result<String, String> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v[ELEMENT_KEY]
            .as_str()
            .ok_or(format!("no element {css}"))?
            .to_owned())
    }

    pub fn count(&self, css: &str) -> Result<usize, String> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array().map_or(0, Vec::len))
    }

    pub fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let el = self.find(css)?;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .map(drop)
    }

    pub fn click(&self, css: &str) -> Result<(), String> {
        let el = self.find(css)?;
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})))
            .map(drop)
    }

    pub fn text(&self, css: &str) -> Result<String, String> {
        let el = self.find(css)?;
        Ok(self
            .call("GET", &format!("/element/{el}/text"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Waits (up to 15 s) until the URL ends with `suffix`: a click that
    /// submits a form returns before the next page has loaded.
    pub fn wait_url(&self, suffix: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url()?;
            if url.ends_with(suffix) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "waited for a URL ending in {suffix:?}, still at {url}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 15 s) until the element's text contains `text`.
    pub fn wait_text(&self, css: &str, text: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.text(css).unwrap_or_default();
            if got.contains(text) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "waited for {css:?} to contain {text:?}, it says {got:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cookies(&self) -> Result<Vec<Value>, String> {
        Ok(self
            .call("GET", "/cookie", None)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub fn screenshot(&self, path: &std::path::Path) -> Result<(), String> {
        let v = self.call("GET", "/screenshot", None)?;
        let png = base64(v.as_str().ok_or("no screenshot")?);
        if !png.starts_with(b"\x89PNG") {
            return Err("the screenshot is not a PNG".into());
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}
