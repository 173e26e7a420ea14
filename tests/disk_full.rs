//! The disk under the database fills up while the real service runs: SQLite on a small tmpfs,
//! and a PostgreSQL cluster of our own with its data directory and its WAL each on one (either
//! is filled: a full data disk fails the transaction, a full WAL disk stops PostgreSQL, which
//! the test starts again once space is back). Writes are answered
//! 503 with a clear problem type (never 500, never a 201 for something not durable), reads
//! keep working, nothing partial is written, and once space is back writes resume by
//! themselves: a payment refused while the disk was full, sent again, commits exactly once,
//! and a restarted service loads and verifies a ledger equal to what the API acknowledged.
//!
//! Needs root (to mount tmpfs); CI runs as root, so there a skip is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{
    AccountId, Action, Amount, EntryKind, Intent, IntentId, Leg, PublicKey, SignedIntent, Tags,
    UnitCode,
};
use serde_json::json;
use support::*;

/// Size of the SQLite tmpfs: the schema and a few hundred entries fit with room to spare.
const SQLITE_TMPFS_MB: u32 = 16;

/// Size of the PostgreSQL data tmpfs: a fresh cluster and a scratch database, plus headroom.
const POSTGRES_TMPFS_MB: u32 = 96;

/// Size of the PostgreSQL WAL tmpfs: a few 1 MiB segments.
const WAL_TMPFS_MB: u32 = 8;

/// Payments tried while the disk is full before the test gives up waiting for a refusal.
/// Space already allocated (a reused WAL, free pages) may take a few; then writes must fail.
const MAX_PAYMENTS_WHILE_FULL: usize = 400;

/// Refusals collected while full: the first is retried to resume, the last never is.
const REFUSALS_WANTED: usize = 3;

/// How long writes may take to resume once space is back.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// The service's request timeout in these tests; no answer may take longer.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// The problem type a write gets while the database reports its disk full.
const FULL: &[&str] = &["/problems/storage-full"];
/// PostgreSQL with a full WAL disk reports it, then stops: from then on it is away.
const FULL_THEN_AWAY: &[&str] = &["/problems/storage-full", "/problems/storage-unavailable"];

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size_mb` MiB; `Err` says why not (not root, no mount).
    fn mount(size_mb: u32) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = StdCommand::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m,mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file open must not keep the mount alive forever.
        let _ = StdCommand::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the file system refuses another byte; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    for size in [1 << 20, 1 << 12, 1] {
        loop {
            match file.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    file.sync_all().unwrap();
    path
}

/// Bytes still free on the file system holding `dir` (for the test's own checks).
fn free_bytes(dir: &Path) -> u64 {
    let output = StdCommand::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
    fields.next().unwrap() * fields.next().unwrap()
}

fn running_as_root() -> bool {
    StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A unit, an issuer, a household and a shop with registered keys; the household holds
/// 1,000.00.
struct Town {
    address: String,
    admin: String,
    unit: UnitCode,
    keys: Vec<SigningKey>,
    issuer: AccountId,
    household: AccountId,
    shop: AccountId,
}

/// The household's opening balance, in minor units.
const OPENING_MINOR: i64 = 1_000_00;

impl Town {
    async fn set_up(address: &str, admin: &str, code: &str) -> Town {
        let made = http(
            address,
            "POST",
            "/v1/units",
            Some(admin),
            &[],
            Some(&json!({"code": code, "name": "x", "scale": 2, "kind": "voucher"}).to_string()),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|s| SigningKey::from_bytes(&[s; 32]))
            .collect();
        let mut ids = Vec::new();
        for (kind, key) in ["issuer", "holder", "merchant"].into_iter().zip(&keys) {
            let body = json!({"unit": code, "kind": kind}).to_string();
            let account = http(
                address,
                "POST",
                "/v1/accounts",
                Some(admin),
                &[],
                Some(&body),
            )
            .await;
            assert_eq!(account.status, 201, "{}", account.body);
            let id: AccountId = account.json()["id"].as_str().unwrap().parse().unwrap();
            let public = PublicKey::of(key);
            let proof = key.sign(&wallet_api::http::key_proof_bytes(id, &public));
            let body = json!({
                "public_key": public.to_base64url(),
                "proof": ledger::Signature(proof.to_bytes()).to_base64url(),
            })
            .to_string();
            let path = format!("/v1/accounts/{id}/key");
            let registered = http(address, "PUT", &path, Some(admin), &[], Some(&body)).await;
            assert_eq!(registered.status, 200, "{}", registered.body);
            ids.push(id);
        }
        let town = Town {
            address: address.to_owned(),
            admin: admin.to_owned(),
            unit: UnitCode::new(code).unwrap(),
            keys,
            issuer: ids[0],
            household: ids[1],
            shop: ids[2],
        };
        let funding = town.sign(
            0,
            Action::Entry {
                kind: EntryKind::Issue,
                legs: vec![
                    Leg {
                        account: town.issuer,
                        unit: town.unit,
                        delta: -OPENING_MINOR,
                    },
                    Leg {
                        account: town.household,
                        unit: town.unit,
                        delta: OPENING_MINOR,
                    },
                ],
                memo: String::new(),
                tags: Tags::default(),
            },
        );
        assert_eq!(town.post(&funding.1).await.status, 201);
        town
    }

    /// Signs `action` with key `signer`: (intent id, signed JSON).
    fn sign(&self, signer: usize, action: Action) -> (IntentId, String) {
        let not_after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 600;
        let key = &self.keys[signer];
        let intent = Intent {
            intent_id: IntentId::new(),
            not_after,
            signer: PublicKey::of(key),
            action,
        };
        let id = intent.intent_id;
        (id, SignedIntent::sign(intent, key).unwrap().to_json())
    }

    /// A signed payment of 1.00 from the household to the shop, with the longest memo, so
    /// each entry takes room.
    fn payment(&self) -> (IntentId, String) {
        self.sign(
            1,
            Action::Payment {
                from: self.household,
                to: self.shop,
                unit: self.unit,
                amount_minor: Amount::from_minor(PAYMENT_MINOR).unwrap(),
                memo: "m".repeat(ledger::entry::MAX_MEMO_CHARS),
                request: None,
            },
        )
    }

    /// Posts a signed intent; the answer must come within the request timeout.
    async fn post(&self, signed: &str) -> Reply {
        let started = Instant::now();
        let reply = http(
            &self.address,
            "POST",
            "/v1/intents",
            None,
            &[],
            Some(signed),
        )
        .await;
        assert!(
            started.elapsed() < ANSWER_WITHIN,
            "an intent took {:?}",
            started.elapsed()
        );
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        http(&self.address, "GET", path, Some(&self.admin), &[], None).await
    }

    async fn admin_post(&self, path: &str, body: &str) -> Reply {
        http(
            &self.address,
            "POST",
            path,
            Some(&self.admin),
            &[],
            Some(body),
        )
        .await
    }

    async fn readyz(&self) -> Reply {
        http(&self.address, "GET", "/readyz", None, &[], None).await
    }

    async fn healthz(&self) -> u16 {
        http(&self.address, "GET", "/healthz", None, &[], None)
            .await
            .status
    }

    async fn balance(&self, account: AccountId) -> i64 {
        let reply = self.get(&format!("/v1/accounts/{account}/balance")).await;
        assert_eq!(reply.status, 200, "balance: {}", reply.body);
        reply.json()["balance_minor"].as_i64().unwrap()
    }

    /// The balances the API must show when `paid` payments of 1.00 were acknowledged.
    async fn assert_balances(&self, paid: usize) {
        let paid_minor = PAYMENT_MINOR * i64::try_from(paid).unwrap();
        assert_eq!(self.balance(self.issuer).await, -OPENING_MINOR);
        assert_eq!(
            self.balance(self.household).await,
            OPENING_MINOR - paid_minor
        );
        assert_eq!(self.balance(self.shop).await, paid_minor);
    }

    /// Whether the journal holds `intent`, and under which entry.
    async fn committed_entry(&self, intent: IntentId) -> Option<String> {
        let reply = self.get(&format!("/v1/intents/{intent}")).await;
        match reply.status {
            200 => Some(reply.json()["entry_id"].as_str().unwrap().to_owned()),
            404 => None,
            other => panic!("GET /v1/intents/{intent}: {other} {}", reply.body),
        }
    }

    /// The shop's statement: how many entries it lists.
    async fn shop_statement_len(&self) -> usize {
        let reply = self
            .get(&format!("/v1/accounts/{}/entries?limit=500", self.shop))
            .await;
        assert_eq!(reply.status, 200, "statement: {}", reply.body);
        reply.json()["items"].as_array().unwrap().len()
    }
}

/// Every payment in these tests moves 1.00.
const PAYMENT_MINOR: i64 = 1_00;

/// What the API said to the payments sent while the disk was full.
#[derive(Default)]
struct WhileFull {
    /// Acknowledged (201): durable, so in the journal for ever after: (intent, entry id).
    acknowledged: Vec<(IntentId, String)>,
    /// Refused (503) and sent again once space is back: (intent, the signed JSON).
    to_retry: Vec<(IntentId, String)>,
    /// Refused (503) and never sent again: must never appear in the journal.
    never_retried: Vec<IntentId>,
}

impl WhileFull {
    /// Records the answer to a payment sent while the disk is full: a 201 (the write fitted
    /// in space already allocated) or a 503 of an `allowed` type with Retry-After, nothing
    /// else. Returns whether it was refused.
    fn record(&mut self, intent: IntentId, reply: &Reply, allowed: &[&str]) -> bool {
        match reply.status {
            201 => {
                let entry = reply.json()["entry_id"].as_str().unwrap().to_owned();
                self.acknowledged.push((intent, entry));
                false
            }
            503 => {
                assert!(
                    allowed.contains(&reply.problem_type().as_str()),
                    "refused with an unexpected problem: {}",
                    reply.body
                );
                assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.body);
                true
            }
            other => panic!(
                "a payment while the disk is full got {other}: {}",
                reply.body
            ),
        }
    }

    /// Payments of 1.00 the API has acknowledged in all.
    fn paid(&self) -> usize {
        PAID_BEFORE + self.acknowledged.len()
    }
}

/// Sends payments one at a time until [`REFUSALS_WANTED`] were refused (the last of them is
/// never sent again), then a burst of concurrent ones (their refusals are never sent again).
async fn pay_while_full(town: &Town, allowed: &[&str]) -> WhileFull {
    let mut full = WhileFull::default();
    for _ in 0..MAX_PAYMENTS_WHILE_FULL {
        let (intent, signed) = town.payment();
        let reply = town.post(&signed).await;
        if full.record(intent, &reply, allowed) {
            full.to_retry.push((intent, signed));
            if full.to_retry.len() == REFUSALS_WANTED {
                break;
            }
        }
    }
    assert_eq!(
        full.to_retry.len(),
        REFUSALS_WANTED,
        "{MAX_PAYMENTS_WHILE_FULL} payments on a full disk and too few refused"
    );
    let (last, _) = full.to_retry.pop().unwrap();
    full.never_retried.push(last);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let (intent, signed) = town.payment();
        let address = town.address.clone();
        burst.spawn(async move {
            let started = Instant::now();
            let reply = http(&address, "POST", "/v1/intents", None, &[], Some(&signed)).await;
            (intent, reply, started.elapsed())
        });
    }
    while let Some(done) = burst.join_next().await {
        let (intent, reply, took) = done.unwrap();
        assert!(took < ANSWER_WITHIN, "a payment in the burst took {took:?}");
        if full.record(intent, &reply, allowed) {
            full.never_retried.push(intent);
        }
    }
    eprintln!(
        "while full: {} payments acknowledged (space already allocated), {} refused",
        full.acknowledged.len(),
        full.to_retry.len() + full.never_retried.len()
    );
    full
}

/// Concurrent payments sent at once while the disk is full.
const BURST: usize = 16;

/// No answer may take longer than the request timeout (plus scheduling slack).
const ANSWER_WITHIN: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 1_000);

/// Sends `signed` again until it is no longer refused (space is back), within
/// [`RESUME_WITHIN`]; returns the answer and how long it took.
async fn send_until_accepted(town: &Town, signed: &str) -> (Reply, Duration) {
    let started = Instant::now();
    loop {
        let reply = town.post(signed).await;
        if reply.status != 503 {
            return (reply, started.elapsed());
        }
        assert!(
            started.elapsed() < RESUME_WITHIN,
            "writes did not resume within {RESUME_WITHIN:?}: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After space came back: the refused payments that are sent again commit exactly once (a
/// second resend is answered as the duplicate it is), and new payments go straight through.
async fn resume_and_retry(town: &Town, full: &mut WhileFull) {
    let retries = std::mem::take(&mut full.to_retry);
    let (first_intent, first) = &retries[0];
    let (reply, took) = send_until_accepted(town, first).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    eprintln!("writes resumed {took:?} after space came back");
    let first_entry = reply.json()["entry_id"].as_str().unwrap().to_owned();
    full.acknowledged.push((*first_intent, first_entry.clone()));
    for (intent, signed) in &retries[1..] {
        let reply = town.post(signed).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let entry = reply.json()["entry_id"].as_str().unwrap().to_owned();
        full.acknowledged.push((*intent, entry));
    }
    let again = town.post(first).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["duplicate"], json!(true));
    assert_eq!(
        again.json()["entry_id"].as_str(),
        Some(first_entry.as_str())
    );
    let (intent, signed) = town.payment();
    let fresh = town.post(&signed).await;
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    let entry = fresh.json()["entry_id"].as_str().unwrap().to_owned();
    full.acknowledged.push((intent, entry));
}

/// The journal holds every acknowledged intent under the entry the API named and none that
/// was refused and not sent again; balances and the statement agree.
async fn assert_journal(town: &Town, full: &WhileFull) {
    for (intent, entry) in &full.acknowledged {
        assert_eq!(
            town.committed_entry(*intent).await.as_deref(),
            Some(entry.as_str())
        );
    }
    for intent in &full.never_retried {
        assert_eq!(town.committed_entry(*intent).await, None);
    }
    town.assert_balances(full.paid()).await;
    assert_eq!(town.shop_statement_len().await, full.paid());
}

/// Payments acknowledged before the disk fills.
const PAID_BEFORE: usize = 3;

async fn pay_before(town: &Town) {
    for _ in 0..PAID_BEFORE {
        let reply = town.post(&town.payment().1).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}

fn serve_args() -> Vec<String> {
    vec![
        // Hundreds of payments from one key in a few seconds: no rate limit here.
        "--writes-per-second".into(),
        "1000000".into(),
        "--write-burst".into(),
        "1000000".into(),
        "--request-timeout-ms".into(),
        REQUEST_TIMEOUT_MS.to_string(),
    ]
}

async fn start(url: &str) -> (tokio::process::Child, String) {
    let args = serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serve(url, &args).await
}

#[tokio::test]
async fn sqlite_on_a_full_disk_refuses_writes_with_503_and_resumes_by_itself() {
    let started = Instant::now();
    if !running_as_root() {
        skip("not root: cannot mount a tmpfs; the SQLite disk-full test SKIPPED");
        return;
    }
    let disk = match Tmpfs::mount(SQLITE_TMPFS_MB) {
        Ok(disk) => disk,
        Err(why) => {
            skip(&format!("{why}; the SQLite disk-full test SKIPPED"));
            return;
        }
    };
    // The database, its WAL, the writer lease and the server secret all live on the tmpfs.
    let url = format!("sqlite://{}", disk.path().join("ledger.db").display());
    let admin = token_cli(&url, "admin", None).await;
    let (mut server, address) = start(&url).await;
    let town = Town::set_up(&address, &admin, "FULL-EUR").await;
    pay_before(&town).await;

    let filler = fill(disk.path());
    assert_eq!(free_bytes(disk.path()), 0);
    // An operator restarting the service on a full disk: it stops cleanly, starts, loads
    // and verifies the ledger (all reads).
    stop_with_sigterm(&mut server, "disk full, SQLite").await;
    let (mut server, address) = start(&url).await;
    let town = Town { address, ..town };
    town.assert_balances(PAID_BEFORE).await;

    let mut full = pay_while_full(&town, FULL).await;
    // An operator's write is refused the same way (once no allocated space is left for it).
    let body = json!({"unit": "FULL-EUR", "kind": "holder"}).to_string();
    let mut refused_account = None;
    for _ in 0..MAX_PAYMENTS_WHILE_FULL {
        let reply = town.admin_post("/v1/accounts", &body).await;
        match reply.status {
            201 => {}
            503 => {
                refused_account = Some(reply);
                break;
            }
            other => panic!(
                "an account opened on a full disk got {other}: {}",
                reply.body
            ),
        }
    }
    let refused_account = refused_account.expect("no account refused on a full disk");
    assert_eq!(
        refused_account.problem_type(),
        "/problems/storage-full",
        "{}",
        refused_account.body
    );
    // Reads keep working: balances, statements, intents. Readiness stays ready (reads are
    // served, and no other process could take the writes) and names the trouble.
    assert_journal(&town, &full).await;
    let ready = town.readyz().await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(
        ready.json()["writes"],
        json!("storage-full"),
        "{}",
        ready.body
    );
    let metrics = town.get("/metrics").await;
    assert!(
        metrics
            .body
            .contains("coledger_write_state{state=\"storage-full\"} 1"),
        "{}",
        metrics.body
    );
    assert_eq!(town.healthz().await, 200);

    // Space comes back; nobody restarts anything.
    std::fs::remove_file(&filler).unwrap();
    resume_and_retry(&town, &mut full).await;
    assert_journal(&town, &full).await;
    assert_eq!(town.readyz().await.json()["writes"], json!("ok"));

    // A restart loads and re-verifies the journal and serves the same balances.
    stop_with_sigterm(&mut server, "disk full, SQLite").await;
    let (_server, address) = start(&url).await;
    let town = Town { address, ..town };
    assert_journal(&town, &full).await;
    eprintln!("SQLite disk-full test took {:?}", started.elapsed());
}

/// A PostgreSQL cluster of our own, its data directory and its WAL each on a tmpfs; stopped
/// (immediately) on drop.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    sockets: tempfile::TempDir,
    port: u16,
    log: PathBuf,
}

impl Postgres {
    fn bin_dir() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
            .collect();
        found.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
        });
        found.pop()
    }

    /// `bin/tool ARGS` as the `postgres` user (PostgreSQL refuses to run as root).
    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        StdCommand::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .unwrap()
    }

    fn init(bin: PathBuf, data_disk: &Tmpfs, wal_disk: &Tmpfs) -> Postgres {
        let chown = |path: &Path| {
            let status = StdCommand::new("chown")
                .arg("postgres")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres {}", path.display());
        };
        chown(data_disk.path());
        chown(wal_disk.path());
        let sockets = tempfile::tempdir().unwrap();
        chown(sockets.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let postgres = Postgres {
            bin,
            data: data_disk.path().join("data"),
            log: sockets.path().join("server.log"),
            sockets,
            port,
        };
        let data = postgres.data.display().to_string();
        let wal = wal_disk.path().join("wal").display().to_string();
        // 1 MiB WAL segments keep a fresh cluster small enough for a small tmpfs.
        let made = postgres.run(
            "initdb",
            &[
                "-D",
                &data,
                "--waldir",
                &wal,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--wal-segsize=1",
                "--no-sync",
            ],
        );
        assert!(
            made.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        postgres
    }

    fn start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync=on -c synchronous_commit=on -c min_wal_size=2MB -c max_wal_size=8MB \
             -c shared_buffers=16MB",
            self.port,
            self.sockets.path().display()
        );
        let data = self.data.display().to_string();
        let log = self.log.display().to_string();
        let started = self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        );
        assert!(
            started.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn is_running(&self) -> bool {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "status"])
            .status
            .success()
    }

    /// Waits until PostgreSQL accepts connections, starting it if it stopped (after a PANIC
    /// the postmaster restarts, and gives up if its recovery cannot write either). Returns
    /// whether it had to be started.
    async fn revive(&self) -> bool {
        let deadline = Instant::now() + RESUME_WITHIN;
        let mut started = false;
        loop {
            if !self.is_running() {
                self.start();
                started = true;
            }
            let port = self.port.to_string();
            let ready = self.run("pg_isready", &["-h", "127.0.0.1", "-p", &port]);
            if ready.status.success() {
                return started;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log lines about the full disk, for the report of what PostgreSQL did.
    fn print_log_about_the_full_disk(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let words = [
            "PANIC",
            "No space left",
            "terminated by signal",
            "startup process failure",
            "ready to accept",
        ];
        for line in log.lines().filter(|l| words.iter().any(|w| l.contains(w))) {
            eprintln!("postgres: {line}");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

/// Which of PostgreSQL's disks the test fills.
#[derive(Clone, Copy, Debug)]
enum FullDisk {
    /// The data directory: relation files cannot grow (SQLSTATE 53100, transaction aborted).
    Data,
    /// The WAL directory: PostgreSQL cannot log at all.
    Wal,
}

async fn postgres_disk_full(which: FullDisk) {
    let started = Instant::now();
    if !running_as_root() {
        skip("not root: cannot mount a tmpfs; the PostgreSQL disk-full test SKIPPED");
        return;
    }
    let Some(bin) = Postgres::bin_dir() else {
        skip("PostgreSQL server binaries not found; the PostgreSQL disk-full test SKIPPED");
        return;
    };
    let disks =
        Tmpfs::mount(POSTGRES_TMPFS_MB).and_then(|data| Ok((data, Tmpfs::mount(WAL_TMPFS_MB)?)));
    let (data_disk, wal_disk) = match disks {
        Ok(disks) => disks,
        Err(why) => {
            skip(&format!("{why}; the PostgreSQL disk-full test SKIPPED"));
            return;
        }
    };
    let postgres = Postgres::init(bin, &data_disk, &wal_disk);
    postgres.start();
    let url = wallet_api::db::scratch::create_postgres_database(
        &postgres.admin_url(),
        "coledger_diskfull",
    )
    .await
    .unwrap();
    let admin = token_cli(&url, "admin", None).await;
    let (mut server, address) = start(&url).await;
    let town = Town::set_up(&address, &admin, "FULL-EUR").await;
    pay_before(&town).await;

    let filler = fill(match which {
        FullDisk::Data => data_disk.path(),
        FullDisk::Wal => wal_disk.path(),
    });
    let allowed = match which {
        FullDisk::Data => FULL,
        FullDisk::Wal => FULL_THEN_AWAY,
    };
    let mut full = pay_while_full(&town, allowed).await;
    let running = postgres.is_running();
    // Balances come from the service's memory, whatever state PostgreSQL is in.
    town.assert_balances(full.paid()).await;
    assert_eq!(town.healthz().await, 200);
    // Ready for reads while PostgreSQL answers (naming the failed write), not ready while
    // it is away.
    let ready = town.readyz().await;
    eprintln!(
        "{which:?} disk full: PostgreSQL running: {running}; readyz: {} {}",
        ready.status, ready.body
    );
    match ready.status {
        200 => assert_ne!(ready.json()["writes"], json!("ok"), "{}", ready.body),
        503 => assert_eq!(
            ready.problem_type(),
            "/problems/not-ready",
            "{}",
            ready.body
        ),
        other => panic!("readyz answered {other}: {}", ready.body),
    }

    // Space comes back; PostgreSQL is started again if the full disk stopped it.
    std::fs::remove_file(&filler).unwrap();
    let restarted = postgres.revive().await;
    postgres.print_log_about_the_full_disk();
    resume_and_retry(&town, &mut full).await;
    assert_journal(&town, &full).await;

    stop_with_sigterm(&mut server, "disk full, PostgreSQL").await;
    let (_server, address) = start(&url).await;
    let town = Town { address, ..town };
    assert_journal(&town, &full).await;
    eprintln!(
        "PostgreSQL {which:?} disk-full test took {:?} (PostgreSQL {})",
        started.elapsed(),
        if restarted {
            "stopped on the full disk and was restarted"
        } else {
            "stayed up"
        }
    );
}

#[tokio::test]
async fn postgres_with_a_full_data_disk_refuses_writes_with_503_and_resumes_by_itself() {
    postgres_disk_full(FullDisk::Data).await;
}

#[tokio::test]
async fn postgres_with_a_full_wal_disk_refuses_writes_with_503_and_resumes_by_itself() {
    postgres_disk_full(FullDisk::Wal).await;
}
