//! A PostgreSQL primary with a synchronous streaming-replication standby, both started from
//! the machine's PostgreSQL binaries on free loopback ports in a temporary directory, for
//! `coledger torture promote`. PostgreSQL refuses to run as root, so as root every server
//! command runs as the `postgres` user.
//!
//! The primary has `synchronous_standby_names` naming the standby, so a COMMIT returns only
//! once the standby has flushed it: an acknowledged entry is on both. Killing the primary
//! and promoting the standby must therefore lose nothing that was acknowledged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::{Connection as _, PgConnection};
use tokio::process::Command;

/// How long the standby may take to catch up and report itself synchronous.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

/// Settings of every server (a standby keeps those of the primary it was copied from).
/// Durable as in production; replication on; small, since the machine is shared.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
max_connections = 100
shared_buffers = 32MB
";

/// Who may connect: anyone from loopback, including for replication (a throwaway cluster
/// on a private port; production uses a replication role with a password or certificate).
const HBA: &str = "
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";

/// One server of the pair.
struct Node {
    /// Its data directory.
    data: PathBuf,
    /// Its loopback port.
    port: u16,
}

/// The running pair. Dropping it stops every server (immediately) and deletes the files.
pub struct Pair {
    bin: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// Index in `nodes` of the primary.
    primary: usize,
    /// Whether server commands run as `postgres` (we are root).
    as_postgres: bool,
    /// Standbys built so far, for their names (`standby1`, `standby2`, …).
    standbys_built: usize,
}

/// The newest PostgreSQL server binaries installed, as Debian and Ubuntu lay them out.
pub fn find_binaries() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "pg_basebackup"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).context(
        "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found under \
         /usr/lib/postgresql/*/bin; install them (apt-get install postgresql-15)",
    )
}

/// A free loopback port (free when asked; the server binds it moments later).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Pair {
    /// Creates and starts the primary, then a standby copied from it, and waits until the
    /// standby is synchronous.
    pub async fn start() -> Result<Pair> {
        let bin = find_binaries()?;
        // Are we root? (`id -u`, rather than a libc call for one number.)
        let uid = Command::new("id").arg("-u").output().await?;
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::Builder::new()
            .prefix("coledger-pgpair.")
            .tempdir()?;
        let mut pair = Pair {
            bin,
            dir,
            nodes: Vec::new(),
            primary: 0,
            as_postgres,
            standbys_built: 0,
        };
        if as_postgres {
            pair.run_checked(Command::new("chown").arg("postgres").arg(pair.dir.path()))
                .await?;
        }
        let primary = Node {
            data: pair.dir.path().join("node0"),
            port: free_port()?,
        };
        pair.server_command("initdb")
            .arg("-D")
            .arg(&primary.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .pipe_to_log(&pair.log("initdb"))?
            .run_checked_async()
            .await
            .context("initdb of the primary")?;
        append(&primary.data.join("postgresql.conf"), SETTINGS)?;
        std::fs::write(primary.data.join("pg_hba.conf"), HBA)?;
        pair.nodes.push(primary);
        pair.start_node(0).await?;
        pair.add_standby(1, free_port()?).await?;
        Ok(pair)
    }

    /// The URL of database `database` listing every server, standbys first: the service
    /// must skip a standby to find the primary, and after a promotion find the new one.
    pub fn url_all(&self, database: &str) -> String {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by_key(|&i| i == self.primary);
        let hosts: Vec<String> = order
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.nodes[i].port))
            .collect();
        format!("postgres://postgres@{}/{database}", hosts.join(","))
    }

    /// The URL of database `database` on the current primary alone.
    pub fn url_primary(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.nodes[self.primary].port
        )
    }

    /// The primary's port and the standby's, for messages.
    pub fn ports(&self) -> (u16, u16) {
        (
            self.nodes[self.primary].port,
            self.nodes[1 - self.primary].port,
        )
    }

    /// Creates an empty database on the primary (it replicates to the standby).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut admin = PgConnection::connect(&self.url_primary("postgres")).await?;
        // The name comes from the caller's constant, [a-z_] only.
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await?;
        // A synchronous commit waits for the standby to flush, not to apply: wait until it
        // has replayed the new database too, so that the service's first look at the
        // standby sees a standby rather than a missing database.
        let written: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(&mut admin)
            .await?;
        let deadline = Instant::now() + SYNC_LIMIT;
        loop {
            let replayed: Option<bool> = sqlx::query_scalar(
                "select bool_and(replay_lsn >= $1::pg_lsn) from pg_stat_replication",
            )
            .bind(&written)
            .fetch_one(&mut admin)
            .await?;
            if replayed == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the standby did not replay the new database within {SYNC_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        admin.close().await?;
        Ok(())
    }

    /// SIGKILLs the primary's postmaster and every process of its server at once, as if its
    /// machine died: no shutdown checkpoint, no goodbye to clients or the standby.
    pub async fn kill_primary(&mut self) -> Result<()> {
        let node = &self.nodes[self.primary];
        let pid_file = std::fs::read_to_string(node.data.join("postmaster.pid"))
            .context("reading the primary's postmaster.pid")?;
        let pid: u32 = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("postmaster.pid without a pid")?;
        // The postmaster and its children (backends, WAL sender, checkpointer) in one kill(1),
        // children first: a backend that outlived the postmaster by a moment would tell its
        // client that the server is going away, which a dead machine does not.
        let mut pids: Vec<String> = children_of(pid).iter().map(u32::to_string).collect();
        pids.push(pid.to_string());
        // A child may have exited meanwhile (kill then says so and fails): what matters is
        // that the postmaster is gone, checked below.
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status()
            .await?;
        // Wait until it is gone and its port no longer answers, so nobody reaches it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid)
            || tokio::net::TcpStream::connect(("127.0.0.1", node.port))
                .await
                .is_ok()
        {
            if Instant::now() > deadline {
                bail!("the killed primary still accepts connections");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// `pg_ctl promote` on the standby, waiting until it accepts writes; it becomes the
    /// primary (alone until [`Pair::rebuild_standby`]).
    pub async fn promote(&mut self) -> Result<()> {
        let standby = 1 - self.primary;
        self.server_command("pg_ctl")
            .args(["promote", "-w", "-t", "60", "-D"])
            .arg(&self.nodes[standby].data)
            .pipe_to_log(&self.log("promote"))?
            .run_checked_async()
            .await
            .context("pg_ctl promote")?;
        self.primary = standby;
        Ok(())
    }

    /// Rebuilds the dead old primary as a fresh standby of the new one (its old files are
    /// thrown away: a primary that died may hold commits the standby never got, so it must
    /// never simply be restarted), then makes replication synchronous again.
    pub async fn rebuild_standby(&mut self) -> Result<()> {
        let old = 1 - self.primary;
        let Node { data, port } = self.nodes.remove(old);
        // The dead server's leftovers belong to `postgres`; root removes them either way.
        std::fs::remove_dir_all(&data).context("removing the old primary's files")?;
        if old < self.primary {
            self.primary -= 1;
        }
        // Same port: the service's URL lists the servers by address.
        self.add_standby(old, port).await
    }

    /// Copies the primary into a new standby at index `at` listening on `port`, starts it,
    /// names it in the primary's `synchronous_standby_names` and waits until it is
    /// synchronous and has flushed everything the primary has written.
    async fn add_standby(&mut self, at: usize, port: u16) -> Result<()> {
        self.standbys_built += 1;
        let name = format!("standby{}", self.standbys_built);
        let node = Node {
            data: self.dir.path().join(format!("node-{name}")),
            port,
        };
        let primary_port = self.nodes[self.primary].port;
        let conninfo =
            format!("host=127.0.0.1 port={primary_port} user=postgres application_name={name}");
        // -R writes primary_conninfo and the slot into the copy; -C -S creates the slot, so
        // the primary keeps the WAL the standby still needs; -X stream copies the WAL written
        // during the copy.
        self.server_command("pg_basebackup")
            .arg("-D")
            .arg(&node.data)
            .args(["-d", &conninfo, "-R", "-X", "stream", "-C", "-S", &name])
            .args(["--checkpoint=fast"])
            .pipe_to_log(&self.log(&format!("basebackup-{name}")))?
            .run_checked_async()
            .await
            .with_context(|| format!("pg_basebackup of {name}"))?;
        // A standby must not wait for a standby of its own once promoted (there is none until
        // one is built), so drop the copied `synchronous_standby_names`.
        let auto = node.data.join("postgresql.auto.conf");
        let kept: String = std::fs::read_to_string(&auto)?
            .lines()
            .filter(|l| !l.trim_start().starts_with("synchronous_standby_names"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&auto, kept)?;
        self.nodes.insert(at, node);
        // Inserting before the primary moves it up one place.
        if at <= self.primary && self.nodes.len() > 1 {
            self.primary += 1;
        }
        self.start_node(at).await?;
        let mut admin = PgConnection::connect(&self.url_primary("postgres")).await?;
        sqlx::query(&format!(
            "alter system set synchronous_standby_names = 'FIRST 1 ({name})'"
        ))
        .execute(&mut admin)
        .await?;
        sqlx::query("select pg_reload_conf()")
            .execute(&mut admin)
            .await?;
        // Synchronous from now on; commits acknowledged before (by the primary alone, just
        // after a promotion) are on the standby once it has flushed the WAL written so far.
        let written: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(&mut admin)
            .await?;
        let deadline = Instant::now() + SYNC_LIMIT;
        loop {
            let caught_up: Option<bool> = sqlx::query_scalar(
                "select flush_lsn >= $1::pg_lsn from pg_stat_replication \
                 where application_name = $2 and sync_state = 'sync' and state = 'streaming'",
            )
            .bind(&written)
            .bind(&name)
            .fetch_optional(&mut admin)
            .await?;
            if caught_up == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name} did not become a synchronous standby within {SYNC_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        admin.close().await?;
        Ok(())
    }

    /// Starts server `index` and waits until it accepts connections.
    async fn start_node(&self, index: usize) -> Result<()> {
        let node = &self.nodes[index];
        let socket_dir = self.dir.path().display();
        self.server_command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&node.data)
            .arg("-l")
            .arg(self.log(&format!("server-{}", node.port)))
            .arg("-o")
            .arg(format!(
                "-c port={} -c unix_socket_directories={socket_dir}",
                node.port
            ))
            .pipe_to_log(&self.log("pg_ctl"))?
            .run_checked_async()
            .await
            .with_context(|| {
                format!(
                    "starting PostgreSQL on port {} (its log: {})",
                    node.port,
                    self.log(&format!("server-{}", node.port)).display()
                )
            })
    }

    fn log(&self, what: &str) -> PathBuf {
        self.dir.path().join(format!("{what}.log"))
    }

    /// A PostgreSQL tool, run as `postgres` when we are root.
    fn server_command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    async fn run_checked(&self, command: &mut Command) -> Result<()> {
        let status = command.status().await?;
        if !status.success() {
            bail!("{command:?} exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Synchronous on purpose: this runs as the run ends, also on an error, and servers
        // left running would hold ports and memory after we exit.
        for node in &self.nodes {
            let mut command = if self.as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"])
                    .arg(self.bin.join("pg_ctl"));
                c
            } else {
                std::process::Command::new(self.bin.join("pg_ctl"))
            };
            let _ = command
                .args(["stop", "-m", "immediate", "-D"])
                .arg(&node.data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether process `pid` exists and is not a zombie (the postmaster's parent is init, which
/// may reap it late).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces or parentheses, so read after
            // the last `)`.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Running a server tool with its output in a log file, and its exit status checked.
trait ToolCommand {
    fn pipe_to_log(&mut self, log: &Path) -> Result<&mut Self>;
    async fn run_checked_async(&mut self) -> Result<()>;
}

impl ToolCommand for Command {
    fn pipe_to_log(&mut self, log: &Path) -> Result<&mut Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        self.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        Ok(self)
    }

    async fn run_checked_async(&mut self) -> Result<()> {
        let status = self.status().await?;
        if !status.success() {
            bail!("{:?} exited with {status}", self.as_std().get_program());
        }
        Ok(())
    }
}
