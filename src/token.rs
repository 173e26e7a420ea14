//! `coledger token create | list | revoke`: operator tokens, managed from the command line
//! (there is no API for making the first admin token, by design).

use anyhow::{Context, Result, bail};
use ledger::ParticipantId;
use wallet_api::Database;
use wallet_api::auth::{self, Role};

use crate::config::{DatabaseArgs, TokenCreateArgs, TokenListArgs, TokenRevokeArgs};
use crate::scheme::now_ms;

/// Opens a ledger that exists, as it is: listing or revoking tokens must neither create a
/// database at a mistyped path nor migrate one under a running service of another version.
async fn open_existing(database: &DatabaseArgs) -> Result<Database> {
    let redacted = wallet_api::db::redact(&database.database_url);
    Database::connect_existing(&database.database_url)
        .await
        .with_context(|| format!("opening {redacted}"))
}

/// The context of a token query on a database opened as it is.
fn reading(database: &DatabaseArgs) -> String {
    format!(
        "reading the tokens of {} (is it a ledger that `coledger serve` has set up?)",
        wallet_api::db::redact(&database.database_url)
    )
}

/// Opens the database for a new token, creating and migrating it if needed: `token create`
/// on a new path is how a deployment gets its first admin token.
async fn open(database: &DatabaseArgs) -> Result<Database> {
    let redacted = wallet_api::db::redact(&database.database_url);
    let db = Database::connect(&database.database_url)
        .await
        .with_context(|| format!("connecting to {redacted}"))?;
    db.migrate()
        .await
        .with_context(|| format!("migrating {redacted}"))?;
    Ok(db)
}

/// Makes and stores a token; returns its text.
pub async fn issue(
    db: &Database,
    role: Role,
    participant: Option<ParticipantId>,
    label: &str,
) -> Result<String> {
    let issued = auth::issue_token(role, participant, label, now_ms());
    db.insert_token(&issued.stored)
        .await
        .context("storing the token")?;
    Ok(issued.text)
}

/// Makes a token that replaces every active one of the same role, participant and label:
/// for tokens printed at each start (`serve --demo`), which nobody can show again, so the
/// earlier ones would otherwise stay valid with no one to revoke them.
pub async fn reissue(
    db: &Database,
    role: Role,
    participant: Option<ParticipantId>,
    label: &str,
) -> Result<String> {
    let now = now_ms();
    for token in db.tokens().await.context("listing tokens")? {
        if token.revoked_at.is_none()
            && token.role == role.as_str()
            && token.participant == participant
            && token.label == label
        {
            db.revoke_token(token.id, now)
                .await
                .context("revoking an earlier token")?;
        }
    }
    issue(db, role, participant, label).await
}

pub async fn create(args: TokenCreateArgs) -> Result<()> {
    let Some(role) = Role::parse(&args.role) else {
        let roles: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        bail!(
            "unknown role {:?}; roles are {}",
            args.role,
            roles.join(", ")
        );
    };
    let db = open(&args.database).await?;
    let participant = match &args.participant {
        Some(text) => {
            let id: ParticipantId = text
                .parse()
                .with_context(|| format!("--participant {text:?} is not a participant id"))?;
            if db.participant(id).await?.is_none() {
                bail!("no participant {id} in this database");
            }
            Some(id)
        }
        None => None,
    };
    if role.needs_participant() && participant.is_none() {
        bail!(
            "a {} token acts for one participant: give --participant <id>",
            role.as_str()
        );
    }
    let text = issue(&db, role, participant, &args.label).await?;
    println!("{text}");
    eprintln!("store it now: only its hash is kept, so it cannot be shown again");
    db.close().await;
    Ok(())
}

pub async fn list(args: TokenListArgs) -> Result<()> {
    let db = open_existing(&args.database).await?;
    let tokens = db.tokens().await.with_context(|| reading(&args.database))?;
    println!(
        "{:<32}  {:<17}  {:<36}  {:<8}  label",
        "id", "role", "participant", "state"
    );
    for token in tokens {
        let participant = token.participant.map(|p| p.to_string()).unwrap_or_default();
        let state = if token.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{:<32}  {:<17}  {:<36}  {:<8}  {}",
            token.id.simple(),
            token.role,
            participant,
            state,
            token.label
        );
    }
    db.close().await;
    Ok(())
}

pub async fn revoke(args: TokenRevokeArgs) -> Result<()> {
    let text = args.id.trim();
    let id = match auth::parse_operator_token(text) {
        Some((id, _)) => id,
        None => uuid::Uuid::try_parse(text)
            .with_context(|| format!("{text:?} is neither a token nor a token id"))?,
    };
    let db = open_existing(&args.database).await?;
    let revoked = db
        .revoke_token(id, now_ms())
        .await
        .with_context(|| reading(&args.database))?;
    if revoked {
        println!("revoked {}", id.simple());
    } else {
        bail!("no active token {}", id.simple());
    }
    db.close().await;
    Ok(())
}
