//! Real servers on 127.0.0.1 for the fetcher's tests: tower-http's
//! `ServeDir` (ranges, validators, `If-Range`) for ordinary cases, and a
//! small server of this file's own for the faults a real one will not make
//! (a dropped connection, a stall, a 503, a lying length, no range
//! support, no length at all), throttled on demand. Every request is logged.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "test files are a few MiB: offsets fit in usize"
)]

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// The longest any test waits for anything.
pub const LIMIT: Duration = Duration::from_secs(60);

/// `len` bytes that depend on `seed` and on the offset.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    storage_core::testing::pattern(seed, len)
}

/// Everything `resource` holds, read back.
pub fn read_all(resource: &impl storage_core::ResourceExt) -> Vec<u8> {
    let mut all = Vec::new();
    resource.read_into(&mut all).unwrap();
    all
}

/// What a decoder does: seeks `resource` to `at` and reads `len` bytes,
/// on a thread of its own (as a decoder's), failing the test after the
/// limit.
pub fn seek_and_read<R>(resource: &R, at: u64, len: usize) -> Vec<u8>
where
    R: storage_core::ResourceExt + Clone + 'static,
{
    use std::io::{Read, Seek, SeekFrom};

    let resource = resource.clone();
    storage_core::testing::within("a read after a seek", move || {
        let mut cursor = storage_core::ResourceCursor::with_timeout(resource, LIMIT);
        cursor.seek(SeekFrom::Start(at)).unwrap();
        let mut buf = vec![0; len];
        cursor.read_exact(&mut buf).map(|()| buf)
    })
    .unwrap()
}

/// A multi-threaded runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Serves `dir` with tower-http's `ServeDir` on 127.0.0.1; the base URL.
pub async fn serve_dir(dir: &Path) -> String {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// What the fault server does with one request.
#[derive(Clone, Debug, Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of a test server"
)]
pub struct Fault {
    /// Answer this status with no body instead.
    pub status: Option<u16>,
    /// Close the connection after this many body bytes.
    pub drop_after: Option<usize>,
    /// Stop sending (keep the connection open) after this many body bytes.
    pub stall_after: Option<usize>,
    /// Declare this `Content-Length` (or total) instead of the true one.
    pub lie_length: Option<u64>,
    /// Answer 416 with `Content-Range: bytes */LEN` (the true length).
    pub not_satisfiable: bool,
    /// Answer 206 with a right `Content-Range` and an empty body.
    pub empty: bool,
}

/// How the fault server behaves (a test's switches, one per behaviour).
#[derive(Clone, Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of a test server"
)]
pub struct Plan {
    pub body: Arc<Vec<u8>>,
    pub etag: String,
    /// Answer ranges with 206 (else every answer is a 200 from 0).
    pub ranges: bool,
    /// Send no length at all (chunked), in 200s and 206s (`*` total).
    pub unknown_length: bool,
    /// Bytes per second per connection (`None`: as fast as possible).
    pub rate: Option<u64>,
    /// Added before each answer.
    pub latency: Duration,
    /// Faults for the first requests, in order (later ones are clean).
    pub faults: Vec<Fault>,
    /// Answer `/old` with a redirect to `/file`.
    pub redirect: bool,
    /// Send no `ETag`.
    pub no_etag: bool,
}

impl Plan {
    pub fn new(body: Vec<u8>) -> Self {
        Self {
            body: Arc::new(body),
            etag: "\"v1\"".into(),
            ranges: true,
            unknown_length: false,
            rate: None,
            latency: Duration::ZERO,
            faults: Vec::new(),
            redirect: false,
            no_etag: false,
        }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

/// The fault server: its URL for the file, its plan (changeable while it
/// runs) and its log.
#[derive(Clone)]
pub struct FaultServer {
    pub url: String,
    pub addr: SocketAddr,
    pub plan: Arc<Mutex<Plan>>,
    pub log: Arc<Mutex<Vec<Seen>>>,
}

impl FaultServer {
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// The `Range` headers asked, in order.
    pub fn ranges_asked(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|seen| seen.range)
            .collect()
    }

    pub fn set_body(&self, body: Vec<u8>, etag: &str) {
        let mut plan = self.plan.lock().unwrap();
        plan.body = Arc::new(body);
        etag.clone_into(&mut plan.etag);
    }
}

/// Starts the fault server with `plan` on 127.0.0.1.
pub async fn fault_server(plan: Plan) -> FaultServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = FaultServer {
        url: format!("http://{addr}/file"),
        addr,
        plan: Arc::new(Mutex::new(plan)),
        log: Arc::new(Mutex::new(Vec::new())),
    };
    let accepting = server.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let server = accepting.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &server).await;
            });
        }
    });
    server
}

/// Parses `bytes=START-` or `bytes=START-END`.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = if end.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        end.trim().parse::<u64>().ok()?.min(len.checked_sub(1)?)
    };
    Some((start, end))
}

/// Serves the requests of one connection (keep-alive) until it closes.
async fn serve(stream: TcpStream, server: &FaultServer) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (mut range, mut if_range) = (None, None);
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await? == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(value.trim().to_owned()),
                    "if-range" => if_range = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let (plan, fault) = {
            let mut log = server.log.lock().unwrap();
            let plan = server.plan.lock().unwrap().clone();
            let fault = plan.faults.get(log.len()).cloned().unwrap_or_default();
            log.push(Seen {
                path: path.clone(),
                range: range.clone(),
                if_range: if_range.clone(),
            });
            (plan, fault)
        };
        tokio::time::sleep(plan.latency).await;
        if plan.redirect && path == "/old" {
            write
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: /file\r\nContent-Length: 0\r\n\r\n")
                .await?;
            continue;
        }
        if let Some(status) = fault.status {
            let head = format!("HTTP/1.1 {status} Fault\r\nContent-Length: 0\r\n\r\n");
            write.write_all(head.as_bytes()).await?;
            continue;
        }
        let len = plan.body.len() as u64;
        if fault.not_satisfiable {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
            );
            write.write_all(head.as_bytes()).await?;
            continue;
        }
        let honoured = plan.ranges && if_range.as_ref().is_none_or(|tag| *tag == plan.etag);
        let asked = range.as_deref().and_then(|r| parse_range(r, len));
        if plan.ranges
            && honoured
            && range.is_some()
            && asked.is_none_or(|(start, end)| start >= len || start > end)
        {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
            );
            write.write_all(head.as_bytes()).await?;
            continue;
        }
        let (status, start, end) = match asked {
            Some((start, end)) if honoured => ("206 Partial Content", start, end + 1),
            _ => ("200 OK", 0, len),
        };
        let declared = if fault.empty {
            0
        } else {
            fault.lie_length.unwrap_or(end - start)
        };
        let mut head = format!("HTTP/1.1 {status}\r\nAccept-Ranges: bytes\r\n");
        if !plan.no_etag {
            let _ = write!(head, "ETag: {}\r\n", plan.etag);
        }
        if plan.unknown_length {
            head.push_str("Transfer-Encoding: chunked\r\n");
            if status.starts_with("206") {
                let _ = write!(head, "Content-Range: bytes {start}-{}/*\r\n", end - 1);
            }
        } else {
            let _ = write!(head, "Content-Length: {declared}\r\n");
            if status.starts_with("206") {
                let total = fault.lie_length.map_or(len, |lie| start + lie);
                let _ = write!(head, "Content-Range: bytes {start}-{}/{total}\r\n", end - 1);
            }
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await?;
        let body = if fault.empty {
            &plan.body[..0]
        } else {
            &plan.body[start as usize..end as usize]
        };
        let cut = fault
            .drop_after
            .or(fault.stall_after)
            .unwrap_or(body.len())
            .min(body.len());
        let piece = plan
            .rate
            .map_or(64 * 1024, |rate| (rate / 50).max(1) as usize);
        for part in body[..cut].chunks(piece) {
            if plan.unknown_length {
                write
                    .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await?;
                write.write_all(part).await?;
                write.write_all(b"\r\n").await?;
            } else {
                write.write_all(part).await?;
            }
            if plan.rate.is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if fault.drop_after.is_some() {
            return Ok(()); // the connection goes mid-body
        }
        if fault.stall_after.is_some() {
            tokio::time::sleep(LIMIT).await;
            return Ok(());
        }
        if plan.unknown_length {
            write.write_all(b"0\r\n\r\n").await?;
        }
        if fault.lie_length.is_some() {
            return Ok(()); // fewer bytes than declared: close
        }
    }
}
