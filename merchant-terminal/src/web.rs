//! The shop terminal, the phone wallet and the public transparency page as web pages: plain HTML, CSS and JavaScript
//! modules compiled into the binary (no build step, no CDN), served by `coledger serve`.
//!
//! The pages talk to the public API (`/v1`) like any client. What they add on the server is
//! only this crate's knowledge: the QR image of a payload ([`crate::qr_render::svg`]) and the
//! ISO 4217 table the terminal needs to write data object `53` ([`currencies_json`]).
//! `web/emv.js` is a second, independent implementation of the payload format in
//! `docs/wire-format.md`; the browser tests check that each side reads the other's codes.

/// A file the pages load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The terminal page (`/terminal`).
pub const TERMINAL_PAGE: Asset = Asset {
    content_type: HTML,
    body: include_str!("../web/terminal.html"),
};

/// The wallet page (`/wallet`, and `/pay/{request}` for pay links).
pub const WALLET_PAGE: Asset = Asset {
    content_type: HTML,
    body: include_str!("../web/wallet.html"),
};

/// The public transparency page (`/transparency`).
pub const TRANSPARENCY_PAGE: Asset = Asset {
    content_type: HTML,
    body: include_str!("../web/transparency.html"),
};

/// The files under `/assets/`, by name.
const ASSETS: [(&str, Asset); 7] = [
    ("common.js", script(include_str!("../web/common.js"))),
    ("emv.js", script(include_str!("../web/emv.js"))),
    ("i18n.js", script(include_str!("../web/i18n.js"))),
    ("terminal.js", script(include_str!("../web/terminal.js"))),
    (
        "transparency.js",
        script(include_str!("../web/transparency.js")),
    ),
    ("wallet.js", script(include_str!("../web/wallet.js"))),
    (
        "style.css",
        Asset {
            content_type: CSS,
            body: include_str!("../web/style.css"),
        },
    ),
];

const fn script(body: &'static str) -> Asset {
    Asset {
        content_type: JS,
        body,
    }
}

/// The asset called `name` (`terminal.js`), if there is one.
pub fn asset(name: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, asset)| asset)
}

/// `{"EUR":978,…}`: the currencies a terminal may name in data object `53`.
pub fn currencies_json() -> String {
    let members: Vec<String> = crate::emv::currencies()
        .map(|(alpha, numeric)| format!("\"{alpha}\":{numeric}"))
        .collect();
    format!("{{{}}}", members.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_a_page_imports_is_served() {
        for (_, page) in ASSETS.iter().chain([
            &("terminal", TERMINAL_PAGE),
            &("wallet", WALLET_PAGE),
            &("transparency", TRANSPARENCY_PAGE),
        ]) {
            for reference in page
                .body
                .split(['"', '\''])
                .filter_map(|s| s.strip_prefix("./").or_else(|| s.strip_prefix("/assets/")))
            {
                if reference.ends_with(".js") || reference.ends_with(".css") {
                    assert!(
                        asset(reference).is_some(),
                        "{reference} is referenced but not served"
                    );
                }
            }
        }
    }

    #[test]
    fn the_currency_table_is_json() {
        let json = currencies_json();
        assert!(json.starts_with("{\"AED\":784,"), "{json}");
        assert!(json.contains("\"EUR\":978"));
        assert!(json.ends_with("\"XXX\":999}"));
    }

    #[test]
    fn every_language_has_every_english_message() {
        let i18n = asset("i18n.js").map(|a| a.body).unwrap_or_default();
        let keys = |language: &str| -> Vec<String> {
            let start = i18n
                .find(&format!("\n  {language}: {{\n"))
                .unwrap_or_else(|| panic!("no {language} messages"));
            let rest = &i18n[start + 1..];
            let end = rest.find("\n  },").unwrap_or(rest.len());
            rest[..end]
                .lines()
                .filter_map(|l| l.trim().strip_prefix('"'))
                .filter_map(|l| l.split('"').next())
                .map(str::to_owned)
                .collect()
        };
        let english = keys("en");
        assert!(english.len() > 50, "{} English messages", english.len());
        for language in ["ar", "es", "el"] {
            assert_eq!(keys(language), english, "{language} differs from English");
        }
    }
}
