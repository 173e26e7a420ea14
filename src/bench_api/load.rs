//! The load generator: many HTTP/1.1 keep-alive connections, each sending one pre-built
//! request at a time and reading the whole response before the next.
//!
//! Without a rate the loop is closed: each connection sends its next request as soon as the
//! last is answered, which measures the most the service can do, but then latency is set by
//! queueing (Little's law: mean latency = connections / throughput). With a rate, requests
//! are due on a fixed schedule spread over the connections (open loop), and latency counts
//! from when a request was due, so a server that falls behind cannot hide it by slowing the
//! client down.
//!
//! It speaks just enough HTTP for this: requests are complete byte strings made before the
//! clock starts, and a response is a status line, headers and a `Content-Length` body (what
//! the service sends). Anything else is counted as a failure, never skipped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use super::cpu::CpuUse;

/// The largest response head plus body accepted; the service's answers are far smaller.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `POST /v1/intents` with `body`, as bytes ready to write.
pub fn intent_request(body: &str) -> Vec<u8> {
    let head = format!(
        "POST /v1/intents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// What the connections saw between the start signal and the last response.
#[derive(Default)]
pub struct Load {
    /// From the start signal to the last response.
    pub elapsed: Duration,
    /// CPU time this process used meanwhile, by thread kind.
    pub cpu: CpuUse,
    /// Client-side latency of each 201 response, request write to full response, in µs.
    pub created_us: Vec<u32>,
    /// Responses other than 201, by status.
    pub other_statuses: BTreeMap<u16, usize>,
    /// Connections that failed (reset, closed, unreadable response), with the first error.
    pub failed_connections: Vec<String>,
}

impl Load {
    /// Everything that was not a 201.
    pub fn refused(&self) -> usize {
        self.other_statuses.values().sum::<usize>() + self.failed_connections.len()
    }

    fn merge(&mut self, other: Load) {
        self.created_us.extend(other.created_us);
        for (status, count) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += count;
        }
        self.failed_connections.extend(other.failed_connections);
    }
}

/// How hard to push.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Concurrent connections.
    pub connections: usize,
    /// Requests per second over all connections; `None` sends as fast as answers come.
    pub rate: Option<f64>,
    /// Longest the run may take.
    pub limit: Duration,
}

impl Shape {
    /// When connection `index` sends its `n`th request, counted from the start; `None` for
    /// as soon as possible. Connections are staggered so the load is even, not in waves.
    fn due(&self, index: usize, n: u32) -> Option<Duration> {
        let rate = self.rate?;
        let per_connection = Duration::from_secs_f64(self.connections as f64 / rate);
        let offset = Duration::from_secs_f64(index as f64 / rate);
        Some(offset + per_connection * n)
    }
}

/// Opens the connections to `address`, then has them send `requests` (each once, shared out
/// in order) until all are sent or the time limit has passed.
pub async fn drive(address: SocketAddr, requests: Arc<Vec<Vec<u8>>>, shape: Shape) -> Result<Load> {
    let connections = shape.connections;
    // Every connection is open before the clock starts, so connecting is not measured.
    let ready = Arc::new(Barrier::new(connections + 1));
    let go = Arc::new(Barrier::new(connections + 1));
    let next = Arc::new(AtomicUsize::new(0));
    // One start for all, so the schedules of a rated run interleave as planned.
    let start = Arc::new(OnceLock::new());
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let (ready, go, next) = (ready.clone(), go.clone(), next.clone());
        let (requests, start) = (requests.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let connected = Connection::open(address).await;
            ready.wait().await;
            go.wait().await;
            let mut connection = connected?;
            let sender = Sender {
                requests: &requests,
                next: &next,
                shape,
                index,
                start: start.get().copied().unwrap_or_else(Instant::now),
            };
            Ok::<_, anyhow::Error>(sender.send_all(&mut connection).await)
        }));
    }
    ready.wait().await;
    let cpu_before = CpuUse::now();
    let started = *start.get_or_init(Instant::now);
    go.wait().await;
    let mut load = Load::default();
    for task in tasks {
        load.merge(task.await.context("a connection task panicked")??);
    }
    load.elapsed = started.elapsed();
    load.cpu = CpuUse::now().since(&cpu_before);
    Ok(load)
}

/// One connection's share of the work.
struct Sender<'a> {
    requests: &'a [Vec<u8>],
    /// The next request to send, shared by all connections.
    next: &'a AtomicUsize,
    shape: Shape,
    index: usize,
    start: Instant,
}

impl Sender<'_> {
    async fn send_all(&self, connection: &mut Connection) -> Load {
        let mut load = Load::default();
        let deadline = self.start + self.shape.limit;
        for n in 0u32.. {
            let due = match self.shape.due(self.index, n) {
                Some(offset) => self.start + offset,
                // Closed loop: no timer, which would round up to the next millisecond.
                None => Instant::now(),
            };
            // A server that falls behind leaves requests due before the deadline unsent at
            // the deadline; they are not counted, and the rate shows the shortfall.
            if due >= deadline || Instant::now() >= deadline {
                break;
            }
            if self.shape.rate.is_some() {
                tokio::time::sleep_until(due.into()).await;
            }
            let Some(request) = self.requests.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match connection.exchange(request).await {
                Ok(201) => load
                    .created_us
                    .push(u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX)),
                Ok(status) => *load.other_statuses.entry(status).or_default() += 1,
                Err(e) => {
                    // The connection's state is unknown now: stop using it.
                    load.failed_connections.push(format!("{e:#}"));
                    break;
                }
            }
        }
        load
    }
}

struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        // Requests are written whole; waiting to coalesce them only adds latency.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Writes `request` and reads one whole response; returns its status.
    async fn exchange(&mut self, request: &[u8]) -> Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if let Some((status, length)) = complete_response(&self.buffer)? {
                self.buffer.drain(..length);
                return Ok(status);
            }
            if self.buffer.len() >= MAX_RESPONSE_BYTES {
                bail!("response larger than {MAX_RESPONSE_BYTES} bytes");
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

/// If `buffer` starts with a whole response: its status and length in bytes.
fn complete_response(buffer: &[u8]) -> Result<Option<(u16, usize)>> {
    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .context("bad Content-Length")?,
            );
        }
    }
    let body = content_length.context("response without Content-Length")?;
    let length = head_end + 4 + body;
    Ok((buffer.len() >= length).then_some((status, length)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_response_is_complete_only_with_its_whole_body() {
        let response = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n{\"a\":";
        assert_eq!(complete_response(&response[..40]).unwrap(), None);
        assert_eq!(
            complete_response(&response[..response.len() - 1]).unwrap(),
            None
        );
        assert_eq!(
            complete_response(response).unwrap(),
            Some((201, response.len()))
        );
        assert!(
            complete_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err()
        );
    }
}
