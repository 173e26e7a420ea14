//! The service under test, as a child process that can be killed and restarted.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a start (load, verify, listen) may take.
const START_LIMIT: Duration = Duration::from_secs(120);

/// A running `coledger serve`.
pub struct Server {
    child: Child,
    /// host:port it listens on.
    pub address: String,
    /// Whether it started as the writer (false: as a standby).
    pub active: bool,
}

/// The arguments every start uses: loopback, port 0, no rate limits (the workload is meant
/// to push), logs only for errors.
fn command(database_url: &str) -> Result<Command> {
    // Resolved once: if the binary is rebuilt during a long run, Linux reports the running
    // one's path as "… (deleted)", while the path found first still names a coledger.
    static EXE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let exe = EXE
        .get_or_init(|| std::env::current_exe().ok())
        .clone()
        .context("finding the coledger executable")?;
    let mut command = Command::new(exe);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .args(["--writes-per-second", "1000000", "--write-burst", "1000000"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    Ok(command)
}

impl Server {
    /// Starts the service and waits until it listens.
    pub async fn start(database_url: &str) -> Result<Server> {
        let mut child = command(database_url)?
            .spawn()
            .context("starting coledger serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let banner = tokio::time::timeout(START_LIMIT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix("coledger listening on http://") {
                    return Ok(Some((address.to_owned(), true)));
                }
                if let Some(rest) = line.strip_prefix("coledger standby on http://") {
                    let address = rest.split(':').take(2).collect::<Vec<_>>().join(":");
                    return Ok(Some((address, false)));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await
        .context("the service did not start in time")??;
        let Some((address, active)) = banner else {
            let status = child.wait().await?;
            bail!("the service exited before listening ({status})");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            address,
            active,
        })
    }

    /// Starts the service and SIGKILLs it `after` later, typically while it is still
    /// loading and verifying the ledger.
    pub async fn kill_during_start(database_url: &str, after: Duration) -> Result<()> {
        let mut child = command(database_url)?
            .spawn()
            .context("starting coledger serve")?;
        tokio::time::sleep(after).await;
        child.start_kill().ok(); // it may already have failed; the next start will tell
        child.wait().await?;
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then waits; an unclean exit is an error.
    pub async fn stop(mut self) -> Result<()> {
        let pid = self.child.id().context("the service already exited")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !sent.success() {
            bail!("could not signal the service");
        }
        let status = tokio::time::timeout(START_LIMIT, self.child.wait())
            .await
            .context("the service did not stop in time")??;
        if !status.success() {
            bail!("the service exited with {status} on SIGTERM");
        }
        Ok(())
    }
}
