//! Several PostgreSQL servers in one URL, libpq style (`postgres://user@h1:5432,h2:5432/db`),
//! and finding the one that accepts writes.
//!
//! With a primary and a streaming standby, the standby is promoted when the primary dies. The
//! service is given both hosts; whenever it (re)connects its writer, it tries them in order
//! and takes the first that is *not* in recovery, as libpq does with
//! `target_session_attrs=read-write`. sqlx parses only single-host URLs, so a list is split
//! here into one single-host URL per server, each parsed by sqlx (every other parameter keeps
//! its sqlx meaning).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::DbError;

/// How long one server may take to accept a connection before the next one is tried: a
/// crashed machine may not refuse, it may just not answer.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The servers a `postgres://` URL names, in the order given. A URL with one host is
/// parsed by sqlx exactly as before. `Err` is the reason the URL is refused.
pub(super) fn parse(url: &str) -> Result<Vec<PgConnectOptions>, String> {
    let (url, target) = take_target_session_attrs(url)?;
    if let Some(target) = target
        && !matches!(target.as_str(), "read-write" | "primary")
    {
        return Err(format!(
            "target_session_attrs={target} is not possible: coledger writes, so it always \
             connects to the server that accepts writes (read-write)"
        ));
    }
    let Some(scheme_end) = url.find("://") else {
        return single(&url).map(|options| vec![options]);
    };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 3..]);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // Like libpq, credentials end at the last `@` of the authority (encode `@` in a password
    // as %40).
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    if !hostlist.contains(',') {
        return single(&url).map(|options| vec![options]);
    }
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if matches!(key, "host" | "hostaddr" | "port") {
            return Err(format!(
                "`{key}=` in the query conflicts with the host list {hostlist:?}: give each \
                 server as host:port in the list only"
            ));
        }
    }
    hostlist
        .split(',')
        .enumerate()
        .map(|(index, server)| {
            let nth = index + 1;
            check_server(server)
                .map_err(|reason| format!("server {nth} of {hostlist:?}: {reason}"))?;
            single(&format!("{scheme}://{userinfo}{server}{tail}"))
                .map_err(|reason| format!("server {nth} ({server}): {reason}"))
        })
        .collect()
}

/// `url` for libpq tools (`pg_dump`, `pg_restore`), which read host lists themselves but by
/// default take the first server that answers, standby or not: a list gets
/// `target_session_attrs=read-write` unless it says otherwise, so they use the primary as
/// the service does. Any other URL is returned as it is.
pub fn libpq_url(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let hostlist = authority.rsplit('@').next().unwrap_or("");
    if !hostlist.contains(',') || url.contains("target_session_attrs=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}target_session_attrs=read-write")
}

fn single(url: &str) -> Result<PgConnectOptions, String> {
    PgConnectOptions::from_str(url).map_err(|e| e.to_string())
}

/// One `host[:port]` of a list (IPv6 in brackets), checked before sqlx sees it so that the
/// message names the server at fault.
fn check_server(server: &str) -> Result<(), String> {
    if server.is_empty() {
        return Err("empty (two commas in a row, or a comma at an end)".into());
    }
    let (host, port) = if let Some(inner) = server.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return Err("an IPv6 address opened with [ but not closed with ]".into());
        };
        if address.is_empty() {
            return Err("empty brackets instead of an IPv6 address".into());
        }
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        }
    } else {
        match server.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address must be written in brackets, as [::1]:5432".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        }
    };
    if host.is_empty() {
        return Err("no host before the port".into());
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!("port {port:?} is not a number from 1 to 65535"));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Removes libpq's `target_session_attrs` from the query (sqlx would warn that it ignores
/// it) and returns its value.
fn take_target_session_attrs(url: &str) -> Result<(String, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut target = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => {
                if target.replace(value.to_owned()).is_some() {
                    return Err("target_session_attrs is given twice".into());
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = match kept.as_slice() {
        [] => base.to_owned(),
        _ => format!("{base}?{}", kept.join("&")),
    };
    Ok((url, target))
}

/// `host:port` (or the socket path) of a server, for logs and messages.
pub(super) fn describe(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// Connects to the first of `servers` that accepts writes, trying them in order: a server
/// that cannot be reached, or that is a standby in recovery (read-only), is skipped with a
/// log line. Returns the connection and the index of its server. When none accepts writes,
/// the error is [`DbError::NoPrimary`] naming what each one said, unless there is a single
/// server and it could not be reached: then it is that server's own error, as before lists
/// existed.
pub(super) async fn connect_primary(
    servers: &[PgConnectOptions],
    application_name: Option<&str>,
) -> Result<(PgConnection, usize), DbError> {
    let mut refusals = Vec::with_capacity(servers.len());
    let mut last_error = None;
    for (index, server) in servers.iter().enumerate() {
        let name = describe(server);
        let options = match application_name {
            Some(app) => server.clone().application_name(app),
            None => server.clone(),
        };
        let attempt = async {
            let mut conn = PgConnection::connect_with(&options).await?;
            let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await?;
            Ok::<_, sqlx::Error>((conn, in_recovery))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok((conn, false))) => {
                if index > 0 {
                    tracing::info!(server = %name, skipped = %refusals.join("; "),
                        "connected to a later server of the list: the earlier ones do not accept writes");
                }
                return Ok((conn, index));
            }
            Ok(Ok((conn, true))) => {
                tracing::info!(server = %name, "skipping a standby in recovery (read-only)");
                // Closing politely is a courtesy; the server copes if it fails.
                let _ = conn.close().await;
                refusals.push(format!("{name} is a standby in recovery"));
            }
            Ok(Err(e)) => {
                tracing::warn!(server = %name, error = %e, "cannot connect; trying the next server");
                refusals.push(format!("{name}: {e}"));
                last_error = Some(e);
            }
            Err(_) => {
                tracing::warn!(server = %name, "no answer within {CONNECT_TIMEOUT:?}; trying the next server");
                refusals.push(format!("{name}: no answer within {CONNECT_TIMEOUT:?}"));
            }
        }
    }
    match (servers.len(), last_error) {
        (1, Some(e)) => Err(DbError::Sql(e)),
        _ => Err(DbError::NoPrimary(refusals.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(url: &str) -> Vec<(String, u16, Option<String>, String)> {
        parse(url)
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o.get_host().to_owned(),
                    o.get_port(),
                    o.get_database().map(str::to_owned),
                    o.get_username().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_single_host_url_is_read_as_before() {
        assert_eq!(
            servers("postgres://coledger:secret@db.example:6432/ledger?sslmode=disable"),
            vec![(
                "db.example".into(),
                6432,
                Some("ledger".into()),
                "coledger".into()
            )]
        );
    }

    #[test]
    fn a_host_list_gives_one_server_each_in_order_with_everything_else_shared() {
        let all = parse(
            "postgresql://coledger:p%40ss@10.0.0.1:5433,db-b,[::1]:5434/ledger?application_name=x",
        )
        .unwrap();
        let described: Vec<_> = all.iter().map(describe).collect();
        assert_eq!(described[0], "10.0.0.1:5433");
        assert!(described[1].starts_with("db-b:"), "{described:?}");
        assert_eq!(described[2], "[::1]:5434");
        for server in &all {
            assert_eq!(server.get_username(), "coledger");
            assert_eq!(server.get_database(), Some("ledger"));
            assert_eq!(server.get_application_name(), Some("x"));
        }
    }

    #[test]
    fn target_session_attrs_read_write_is_accepted_and_others_are_refused() {
        let all = parse("postgres://u@a:1,b:2/db?target_session_attrs=read-write").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            parse("postgres://u@a:1/db?target_session_attrs=primary")
                .unwrap()
                .len(),
            1
        );
        let refused = parse("postgres://u@a:1,b:2/db?target_session_attrs=any").unwrap_err();
        assert!(
            refused.contains("target_session_attrs=any is not possible"),
            "{refused}"
        );
        let twice =
            parse("postgres://u@a/db?target_session_attrs=primary&target_session_attrs=primary")
                .unwrap_err();
        assert!(twice.contains("given twice"), "{twice}");
    }

    #[test]
    fn libpq_tools_are_sent_to_the_primary_of_a_list() {
        assert_eq!(
            libpq_url("postgres://u@a:1,b:2/db"),
            "postgres://u@a:1,b:2/db?target_session_attrs=read-write"
        );
        assert_eq!(
            libpq_url("postgres://u@a,b/db?sslmode=require"),
            "postgres://u@a,b/db?sslmode=require&target_session_attrs=read-write"
        );
        for unchanged in [
            "postgres://u@a:1/db",
            "postgres://u@a,b/db?target_session_attrs=any",
            "sqlite://data/x,y.db",
        ] {
            assert_eq!(libpq_url(unchanged), unchanged);
        }
    }

    #[test]
    fn malformed_host_lists_are_refused_naming_the_server_at_fault() {
        let cases = [
            (
                "postgres://u@a:5432,,b:5432/db",
                "server 2 of \"a:5432,,b:5432\": empty",
            ),
            ("postgres://u@a:5432,/db", "server 2 of \"a:5432,\": empty"),
            ("postgres://u@,a/db", "server 1 of \",a\": empty"),
            (
                "postgres://u@a,b:port/db",
                "port \"port\" is not a number from 1 to 65535",
            ),
            (
                "postgres://u@a,b:0/db",
                "port \"0\" is not a number from 1 to 65535",
            ),
            (
                "postgres://u@a,b:70000/db",
                "port \"70000\" is not a number",
            ),
            (
                "postgres://u@a,:5432/db",
                "server 2 of \"a,:5432\": no host before the port",
            ),
            ("postgres://u@a,::1:5432/db", "must be written in brackets"),
            ("postgres://u@a,[::1/db", "opened with [ but not closed"),
            (
                "postgres://u@a,[::1]x/db",
                "unexpected \"x\" after the IPv6 address",
            ),
            ("postgres://u@a,[]:1/db", "empty brackets"),
            (
                "postgres://u@a,b/db?port=5433",
                "`port=` in the query conflicts with the host list",
            ),
            (
                "postgres://u@a,b/db?host=c",
                "`host=` in the query conflicts",
            ),
        ];
        for (url, expected) in cases {
            let reason = parse(url).expect_err(url);
            assert!(reason.contains(expected), "{url}: {reason}");
        }
    }
}
