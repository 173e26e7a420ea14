//! `coledger terminal`: a merchant's terminal in the shell. `init` creates and registers the
//! terminal's signing key; `charge` asks for an amount with a signed EMV merchant-presented
//! QR code (DESIGN §7) printed as text, then waits until it is paid; `sales` lists today's
//! takings. It talks to the service over HTTP with the merchant's token, like any client.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ed25519_dalek::{Signer as _, SigningKey};
use ledger::{AccountId, Amount, CategoryCode, PaymentRequestId, PublicKey, UnitCode};
use merchant_terminal::emv::{
    AlternateLanguage, Initiation, PaymentRequestPayload, RequestAmount, currency_for_peg, encode,
    pay_link,
};
use serde_json::{Value, json};

use crate::config::{TerminalArgs, TerminalChargeArgs};
use crate::http_client::{Response, request};

/// How long one call to the service may take.
const CALL_LIMIT: Duration = Duration::from_secs(15);
/// How often `charge` asks whether the request is paid.
const POLL_EVERY: Duration = Duration::from_millis(300);

/// `host:port` from `http://host:port[/]`.
fn address(api: &str) -> Result<String> {
    let Some(rest) = api.strip_prefix("http://") else {
        bail!("--api {api:?}: give http://host:port (put TLS in front with a reverse proxy)");
    };
    Ok(rest.trim_end_matches('/').to_owned())
}

async fn call(
    args: &TerminalArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let body = body.map(Value::to_string);
    let Response { status, body } = request(
        &address(&args.api)?,
        method,
        path,
        Some(&args.token),
        body.as_deref(),
        CALL_LIMIT,
    )
    .await?;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let detail = json["detail"].as_str().unwrap_or(&body);
        bail!("{method} {path}: {status}: {detail}");
    }
    Ok(json)
}

fn read_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the terminal key {}", path.display()))?;
    let text = text.trim();
    let mut seed = [0u8; 32];
    if text.len() != 64 {
        bail!("{}: expected 64 hex characters", path.display());
    }
    for (byte, pair) in seed.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let hex = std::str::from_utf8(pair).unwrap_or("zz");
        *byte =
            u8::from_str_radix(hex, 16).with_context(|| format!("{}: not hex", path.display()))?;
    }
    Ok(SigningKey::from_bytes(&seed))
}

fn write_new_key(path: &Path) -> Result<SigningKey> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    crate::secret::create_private_file(path, &hex)?;
    Ok(key)
}

/// `coledger terminal init`.
pub async fn init(args: TerminalArgs) -> Result<()> {
    let key = if args.key_file.exists() {
        read_key(&args.key_file)?
    } else {
        write_new_key(&args.key_file)?
    };
    let account: AccountId = args
        .account
        .parse()
        .with_context(|| format!("--account {:?} is not an account id", args.account))?;
    let public = PublicKey::of(&key);
    let proof = key.sign(&wallet_api::http::key_proof_bytes(account, &public));
    call(
        &args,
        "PUT",
        &format!("/v1/accounts/{account}/key"),
        Some(&json!({
            "public_key": public.to_base64url(),
            "proof": ledger::Signature(proof.to_bytes()).to_base64url(),
        })),
    )
    .await?;
    println!(
        "terminal key {} registered for account {account}",
        public.to_base64url()
    );
    Ok(())
}

/// What the QR code says about the shop.
struct Shop {
    unit: UnitCode,
    scale: u8,
    currency: u16,
    category: CategoryCode,
    name: String,
    city: String,
    alternate: Option<AlternateLanguage>,
}

fn printable_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

async fn shop(args: &TerminalChargeArgs) -> Result<Shop> {
    let t = &args.terminal;
    let account = call(t, "GET", &format!("/v1/accounts/{}", t.account), None).await?;
    let unit = UnitCode::new(account["unit"].as_str().unwrap_or_default())?;
    let owner = account["participant_id"]
        .as_str()
        .context("the account belongs to no participant, so the QR code has no shop")?;
    let participant = call(t, "GET", &format!("/v1/participants/{owner}"), None).await?;
    let unit_json = call(t, "GET", &format!("/v1/units/{unit}"), None).await?;
    let scale = u8::try_from(unit_json["scale"].as_u64().unwrap_or(0)).unwrap_or(0);
    let currency = currency_for_peg(unit_json["peg"].as_str())?;
    let category = CategoryCode::parse(
        participant["category_code"]
            .as_str()
            .context("the shop has no category code")?,
    )?;
    let registered = participant["name"].as_str().unwrap_or_default().to_owned();
    let name = match &args.name {
        Some(name) => name.clone(),
        None if printable_ascii(&registered) => registered.chars().take(25).collect(),
        None => bail!("the shop's name {registered:?} is not in Latin letters: give --name"),
    };
    let area = participant["area"].as_str().unwrap_or_default().to_owned();
    let city = match &args.city {
        Some(city) => city.clone(),
        None if printable_ascii(&area) => area.chars().take(15).collect(),
        None => bail!("give --city (printable ASCII, 15 characters)"),
    };
    let alternate = (!printable_ascii(&registered)).then(|| AlternateLanguage {
        language: args.language.clone(),
        name: registered.chars().take(25).collect(),
        city: None,
    });
    Ok(Shop {
        unit,
        scale,
        currency,
        category,
        name,
        city,
        alternate,
    })
}

/// `coledger terminal charge`.
pub async fn charge(args: TerminalChargeArgs) -> Result<()> {
    let key = read_key(&args.terminal.key_file)?;
    let shop = shop(&args).await?;
    let amount = Amount::parse(&args.amount, shop.scale)
        .with_context(|| format!("amount {:?}", args.amount))?;
    let t = &args.terminal;
    let created = call(
        t,
        "POST",
        "/v1/payment-requests",
        Some(&json!({
            "account_id": t.account,
            "amount": args.amount,
            "memo": args.memo,
            "expires_in_s": args.expires_in_s,
        })),
    )
    .await?;
    let id: PaymentRequestId = created["id"]
        .as_str()
        .context("no request id in the answer")?
        .parse()?;
    let payload = PaymentRequestPayload {
        initiation: Initiation::Dynamic {
            amount: RequestAmount {
                value: amount,
                scale: shop.scale,
            },
        },
        merchant_account: t.account.parse()?,
        unit: shop.unit,
        category: shop.category,
        currency_numeric: shop.currency,
        country: args.country.clone(),
        merchant_name: shop.name,
        city: shop.city,
        reference: Some(id),
        terminal: Some(args.label.clone()),
        alternate: shop.alternate,
    };
    let text = encode(&payload, &key)?;
    println!("{}", merchant_terminal::qr_render::unicode(&text)?);
    println!("{} {} — scan to pay", args.amount, shop.unit);
    println!("payload: {text}");
    println!("pay link: {}", pay_link(&args.terminal.api, id));
    println!("request: {id}");
    let started = Instant::now();
    loop {
        let request = call(t, "GET", &format!("/v1/payment-requests/{id}"), None).await?;
        match request["status"].as_str() {
            Some("paid") => {
                println!(
                    "PAID {} {} ({:.1} s)",
                    args.amount,
                    shop.unit,
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some("expired") => bail!("the request expired unpaid"),
            Some("cancelled") => bail!("the request was cancelled unpaid"),
            _ => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// `coledger terminal sales`.
pub async fn sales(args: TerminalArgs) -> Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let since = now_ms - now_ms.rem_euclid(86_400_000);
    let account = call(
        &args,
        "GET",
        &format!("/v1/accounts/{}", args.account),
        None,
    )
    .await?;
    let unit = account["unit"].as_str().unwrap_or_default().to_owned();
    let scale = {
        let unit_json = call(&args, "GET", &format!("/v1/units/{unit}"), None).await?;
        u8::try_from(unit_json["scale"].as_u64().unwrap_or(0)).unwrap_or(0)
    };
    let mut cursor: Option<String> = None;
    let (mut count, mut total) = (0usize, 0i64);
    loop {
        let mut path = format!(
            "/v1/accounts/{}/entries?since_ms={since}&kind=payment&limit=500",
            args.account
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = call(&args, "GET", &path, None).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let minor = item["amount_minor"].as_i64().unwrap_or(0);
            if minor > 0 {
                count += 1;
                total += minor;
                println!(
                    "{}  {:>12}  {}",
                    item["created_at_ms"],
                    item["amount"].as_str().unwrap_or_default(),
                    item["memo"].as_str().unwrap_or_default()
                );
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    println!(
        "today: {count} sales, {} {unit}",
        wallet_api::http::render::decimal(total, scale)
    );
    Ok(())
}
