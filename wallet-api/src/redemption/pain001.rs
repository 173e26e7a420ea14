//! A SEPA credit-transfer initiation file, ISO 20022 `pain.001.001.09`
//! (CustomerCreditTransferInitiationV09), as the EPC SEPA Credit Transfer rulebook narrows it:
//! one payment information block, euros only, service level `SEPA`, charges `SLEV`.
//!
//! Everything is validated before one byte is written, and each error names the field and the
//! transfer (`transfers[2].creditor_iban`), so an operator can fix the merchant's record.
//!
//! Decisions, stricter than the XSD where the EPC rulebook is stricter:
//! - **Character set.** Text goes out in the EPC basic Latin set only: `a-z A-Z 0-9` and
//!   `/ - ? : ( ) . , ' +` and space. Names and remittance text are converted: Latin letters
//!   with diacritics lose them (`á`→`a`, `ñ`→`n`, `ç`→`c`, `Ä`→`A`, as the EPC best practice
//!   does; combining accents of decomposed text are dropped), ligatures and special letters
//!   are spelled out (`ß`→`ss`, `æ`→`ae`, `Þ`→`TH`), `&`→`+`, typographic quotes→`'`,
//!   dashes→`-`, `[{<`→`(` and `]}>`→`)`, `;`→`,`, `\`→`/`, `€`→`EUR`, whitespace and
//!   control characters→one space, any other ASCII symbol (`@ # * = _ …`)→`.`.
//!   Letters of other scripts (Greek, Cyrillic, Arabic, …) and other symbols have no simple
//!   spelling and are **refused** with [`SepaError::Unrepresentable`] naming the character:
//!   a guessed transliteration of a merchant's legal name could fail the payee's bank's name
//!   check, so the registry must hold the name as the bank account has it, in Latin letters.
//! - **Lengths.** Names are cut to [`MAX_NAME_CHARS`] (70, the EPC limit; banks forward no
//!   more) after conversion, because a long legal name is still the right payee. Remittance
//!   text over [`MAX_REMITTANCE_CHARS`] (140) is **refused**, never cut: the reference the
//!   merchant reconciles by may be at its end. Empty names and remittance are refused.
//! - **Identifiers** (message id, end-to-end ids) are never converted: they are references a
//!   machine compares. They must be 1..=35 characters of the basic set without spaces, must not
//!   start or end with `/` or contain `//`, and end-to-end ids must be unique in the file.
//! - **Amounts** are integer cents, 1..=99 999 999 999 (0.01 to 999 999 999.99 EUR), written
//!   with exactly two decimals by integer division; the control sums are exact.
//! - IBANs lose spaces and are upper-cased, must belong to a SEPA country with that country's
//!   length, and must pass the ISO 7064 MOD 97-10 check. BICs are 8 or 11 characters.
//! - The payment information id is the message id; batch booking is requested (one debit on the
//!   municipality's statement); a transfer without a creditor BIC has no `CdtrAgt` (IBAN-only,
//!   as SEPA allows within the EEA; a bank in a SEPA country outside it, such as Switzerland
//!   or Albania, must be named by its BIC) and a debtor without a BIC gets `Othr/Id`
//!   `NOTPROVIDED`.

use std::collections::HashMap;

use super::{Date, DateError, UtcDateTime};

/// The ISO 20022 namespace of the document.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";
/// The most transfers one file carries: a stated bound that also keeps the control sum
/// (at most 10^16 cents) far from overflowing an `i64`.
pub const MAX_TRANSFERS: usize = 100_000;
/// The largest SEPA credit transfer, 999 999 999.99 EUR, in cents.
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999_999;
/// The longest identifier (`Max35Text`).
pub const MAX_ID_CHARS: usize = 35;
/// The longest party name the EPC rulebook forwards; longer names are cut to this.
pub const MAX_NAME_CHARS: usize = 70;
/// The longest unstructured remittance text; longer text is refused.
pub const MAX_REMITTANCE_CHARS: usize = 140;
/// The longest text accepted as input for any name or remittance field, before conversion;
/// anything longer is hostile or a mistake, and refusing it bounds the work.
pub const MAX_INPUT_CHARS: usize = 1_000;
/// The longest IBAN (ISO 13616).
pub const MAX_IBAN_CHARS: usize = 34;

/// The account that pays: the municipality's or programme's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debtor {
    /// The account holder's name.
    pub name: String,
    /// The account's IBAN; spaces and lower case are accepted.
    pub iban: String,
    /// The bank's BIC, if known; SEPA lets banks derive it from the IBAN.
    pub bic: Option<String>,
}

/// One payment to one merchant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The reference that travels unchanged to the merchant's statement; unique in the file.
    pub end_to_end_id: String,
    /// The merchant's name as its bank account holds it.
    pub creditor_name: String,
    /// The merchant's IBAN; spaces and lower case are accepted.
    pub creditor_iban: String,
    /// The merchant's bank's BIC, if known.
    pub creditor_bic: Option<String>,
    /// The amount in euro cents, 1..=[`MAX_AMOUNT_CENTS`].
    pub amount_cents: i64,
    /// Unstructured remittance text for the merchant, such as the settlement period.
    pub remittance: String,
}

/// A credit-transfer file: one debtor account paying one or more merchants on one date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditTransferFile {
    /// The file's unique id; banks refuse a second file with the same id.
    pub message_id: String,
    /// When the file was made, Unix seconds; passed in, never read from a clock here.
    pub created_at_unix_s: i64,
    /// The day the bank is asked to execute the transfers; not before the creation day (UTC).
    pub execution_date: Date,
    /// The paying account.
    pub debtor: Debtor,
    /// The payments, in the order they appear in the file.
    pub transfers: Vec<Transfer>,
}

/// Why an IBAN is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    /// Not 2 letters, 2 digits and letters or digits after them.
    #[error("{iban:?} is not an IBAN (two letters, two check digits, then letters and digits)")]
    Format {
        /// The normalised text, cut to [`MAX_IBAN_CHARS`] characters.
        iban: String,
    },
    /// The country has no IBAN this service knows (the United States, for one, has none).
    #[error(
        "country {country:?} has no IBAN known here (SEPA countries, Palestine, Jordan, \
         Tunisia and their neighbours are)"
    )]
    Country {
        /// The two-letter country code.
        country: String,
    },
    /// A valid IBAN, but of a country outside the SEPA scheme: a SEPA file cannot pay it.
    #[error("an IBAN from {country} cannot be paid by a SEPA transfer (not in the SEPA scheme)")]
    NotSepa {
        /// The two-letter country code.
        country: String,
    },
    /// Wrong length for the country.
    #[error("an IBAN from {country} has {expected} characters, this one has {actual}")]
    Length {
        /// The two-letter country code.
        country: String,
        /// The country's IBAN length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The MOD 97-10 check fails: a typo.
    #[error("{iban} fails the IBAN check digits (ISO 7064 MOD 97-10); is there a typo?")]
    CheckDigits {
        /// The normalised IBAN.
        iban: String,
    },
}

/// What is wrong with an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdProblem {
    /// Empty.
    #[error("is empty")]
    Empty,
    /// Over [`MAX_ID_CHARS`].
    #[error("is longer than {MAX_ID_CHARS} characters")]
    TooLong,
    /// A character outside the basic Latin set, or a space.
    #[error("contains {0:?}; identifiers use A-Z a-z 0-9 / - ? : ( ) . , ' + and no spaces")]
    Character(char),
    /// Starts or ends with `/`, or contains `//` (the EPC forbids these).
    #[error("must not start or end with '/' or contain '//'")]
    Slash,
}

/// Why a credit-transfer file could not be made. Every variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SepaError {
    /// A file without transfers.
    #[error("transfers: a credit-transfer file needs at least one transfer")]
    NoTransfers,
    /// More than [`MAX_TRANSFERS`].
    #[error("transfers: {count} transfers is more than the {MAX_TRANSFERS} one file may carry")]
    TooManyTransfers {
        /// How many were given.
        count: usize,
    },
    /// A bad IBAN.
    #[error("{field}: {problem}")]
    Iban {
        /// The field, such as `transfers[2].creditor_iban`.
        field: String,
        /// What is wrong.
        problem: IbanError,
    },
    /// A bad BIC.
    #[error(
        "{field}: {bic:?} is not a BIC (8 or 11 letters and digits: bank, 2-letter country, location, optional branch)"
    )]
    Bic {
        /// The field.
        field: String,
        /// The rejected text, cut to 20 characters.
        bic: String,
    },
    /// A transfer involving a SEPA country outside the EEA (the payee's bank or the payer's)
    /// without the payee bank's BIC, which the scheme then requires.
    #[error(
        "{field}: a SEPA transfer involving {country} (outside the EEA) needs the payee bank's BIC"
    )]
    BicRequired {
        /// The field.
        field: String,
        /// The IBAN's country.
        country: String,
    },
    /// An amount outside 0.01..=999 999 999.99 EUR.
    #[error("{field}: {amount_cents} cents is outside 0.01..=999999999.99 EUR")]
    Amount {
        /// The field.
        field: String,
        /// The rejected amount.
        amount_cents: i64,
    },
    /// A bad identifier.
    #[error("{field} {problem}")]
    Id {
        /// The field.
        field: String,
        /// What is wrong.
        problem: IdProblem,
    },
    /// Two transfers share an end-to-end id.
    #[error("{field}: end-to-end id {id:?} is already used by transfers[{first}]")]
    DuplicateEndToEndId {
        /// The later field.
        field: String,
        /// The repeated id.
        id: String,
        /// The index of the first transfer using it.
        first: usize,
    },
    /// A name or remittance text that is empty after conversion.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// Text longer than its limit (remittance after conversion, or any input over
    /// [`MAX_INPUT_CHARS`]).
    #[error("{field} has {chars} characters; the most is {max}")]
    TooLong {
        /// The field.
        field: String,
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A character with no spelling in the EPC basic Latin set (Greek, Arabic, emoji, …).
    #[error(
        "{field}: {character:?} (U+{code:04X}) has no SEPA Latin spelling; give the name in Latin letters as the bank account holds it",
        code = u32::from(*character)
    )]
    Unrepresentable {
        /// The field.
        field: String,
        /// The character.
        character: char,
    },
    /// The creation time is not a Unix time in 1970..=9999.
    #[error("created_at_unix_s: {0}")]
    CreatedAt(DateError),
    /// Execution requested for a day before the file was made.
    #[error("execution_date {execution} is before the creation date {created} (UTC)")]
    ExecutionBeforeCreation {
        /// The requested execution date.
        execution: Date,
        /// The UTC date of `created_at_unix_s`.
        created: Date,
    },
}

/// The generator's validated view of one transfer.
struct CleanTransfer {
    end_to_end_id: String,
    creditor_name: String,
    creditor_iban: String,
    creditor_bic: Option<String>,
    amount_cents: i64,
    remittance: String,
}

/// Validates `file` and writes it as a pain.001.001.09 document (UTF-8, with declaration).
pub fn pain001_xml(file: &CreditTransferFile) -> Result<String, SepaError> {
    if file.transfers.is_empty() {
        return Err(SepaError::NoTransfers);
    }
    if file.transfers.len() > MAX_TRANSFERS {
        return Err(SepaError::TooManyTransfers {
            count: file.transfers.len(),
        });
    }
    let created = UtcDateTime::from_unix_s(file.created_at_unix_s).map_err(SepaError::CreatedAt)?;
    if file.execution_date < created.date {
        return Err(SepaError::ExecutionBeforeCreation {
            execution: file.execution_date,
            created: created.date,
        });
    }
    let message_id = check_id("message_id", &file.message_id)?;
    let debtor_name = sepa_name("debtor.name", &file.debtor.name)?;
    let debtor_iban = iban_field("debtor.iban", &file.debtor.iban)?;
    let debtor_bic = bic_field("debtor.bic", file.debtor.bic.as_deref())?;
    // The scheme asks for the payee's bank (BIC) in every transfer that involves a SEPA
    // country outside the EEA, on either side.
    let debtor_outside_eea =
        needs_bic(&debtor_iban).then(|| debtor_iban.get(..2).unwrap_or_default());
    let transfers = clean_transfers(&file.transfers, debtor_outside_eea)?;
    // Each amount is at most MAX_AMOUNT_CENTS and there are at most MAX_TRANSFERS, so the sum
    // stays below 10^16 and cannot overflow an i64.
    let control_sum: i64 = transfers.iter().map(|t| t.amount_cents).sum();
    let count = transfers.len().to_string();

    let mut xml = Xml::new();
    xml.open(&format!("Document xmlns=\"{NAMESPACE}\""));
    xml.open("CstmrCdtTrfInitn");
    xml.open("GrpHdr");
    xml.leaf("MsgId", &message_id);
    xml.leaf("CreDtTm", &created.to_string());
    xml.leaf("NbOfTxs", &count);
    xml.leaf("CtrlSum", &euro_decimal(control_sum));
    xml.open("InitgPty");
    xml.leaf("Nm", &debtor_name);
    xml.close("InitgPty");
    xml.close("GrpHdr");

    xml.open("PmtInf");
    xml.leaf("PmtInfId", &message_id);
    xml.leaf("PmtMtd", "TRF");
    xml.leaf("BtchBookg", "true");
    xml.leaf("NbOfTxs", &count);
    xml.leaf("CtrlSum", &euro_decimal(control_sum));
    xml.open("PmtTpInf");
    xml.open("SvcLvl");
    xml.leaf("Cd", "SEPA");
    xml.close("SvcLvl");
    xml.close("PmtTpInf");
    xml.open("ReqdExctnDt");
    xml.leaf("Dt", &file.execution_date.to_string());
    xml.close("ReqdExctnDt");
    party(&mut xml, "Dbtr", &debtor_name);
    account(&mut xml, "DbtrAcct", &debtor_iban);
    agent(&mut xml, "DbtrAgt", debtor_bic.as_deref());
    xml.leaf("ChrgBr", "SLEV");
    for transfer in &transfers {
        transaction(&mut xml, transfer);
    }
    xml.close("PmtInf");
    xml.close("CstmrCdtTrfInitn");
    xml.close("Document");
    Ok(xml.finish())
}

fn clean_transfers(
    transfers: &[Transfer],
    debtor_outside_eea: Option<&str>,
) -> Result<Vec<CleanTransfer>, SepaError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(transfers.len());
    let mut clean = Vec::with_capacity(transfers.len());
    for (index, transfer) in transfers.iter().enumerate() {
        let field = |name: &str| format!("transfers[{index}].{name}");
        let end_to_end_id = check_id(&field("end_to_end_id"), &transfer.end_to_end_id)?;
        if let Some(&first) = seen.get(transfer.end_to_end_id.as_str()) {
            return Err(SepaError::DuplicateEndToEndId {
                field: field("end_to_end_id"),
                id: end_to_end_id,
                first,
            });
        }
        seen.insert(&transfer.end_to_end_id, index);
        if !(1..=MAX_AMOUNT_CENTS).contains(&transfer.amount_cents) {
            return Err(SepaError::Amount {
                field: field("amount_cents"),
                amount_cents: transfer.amount_cents,
            });
        }
        let remittance = sepa_text(&field("remittance"), &transfer.remittance)?;
        if remittance.len() > MAX_REMITTANCE_CHARS {
            return Err(SepaError::TooLong {
                field: field("remittance"),
                chars: remittance.len(),
                max: MAX_REMITTANCE_CHARS,
            });
        }
        let creditor_iban = iban_field(&field("creditor_iban"), &transfer.creditor_iban)?;
        let creditor_bic = bic_field(&field("creditor_bic"), transfer.creditor_bic.as_deref())?;
        let outside_eea = debtor_outside_eea.or_else(|| {
            needs_bic(&creditor_iban).then(|| creditor_iban.get(..2).unwrap_or_default())
        });
        if let Some(country) = outside_eea
            && creditor_bic.is_none()
        {
            return Err(SepaError::BicRequired {
                field: field("creditor_bic"),
                country: country.to_owned(),
            });
        }
        clean.push(CleanTransfer {
            end_to_end_id,
            creditor_name: sepa_name(&field("creditor_name"), &transfer.creditor_name)?,
            creditor_iban,
            creditor_bic,
            amount_cents: transfer.amount_cents,
            remittance,
        });
    }
    Ok(clean)
}

fn transaction(xml: &mut Xml, transfer: &CleanTransfer) {
    xml.open("CdtTrfTxInf");
    xml.open("PmtId");
    xml.leaf("EndToEndId", &transfer.end_to_end_id);
    xml.close("PmtId");
    xml.open("Amt");
    xml.leaf_attr(
        "InstdAmt",
        "Ccy",
        "EUR",
        &euro_decimal(transfer.amount_cents),
    );
    xml.close("Amt");
    // Without a BIC the creditor's bank is left out: SEPA routes by IBAN alone.
    if let Some(bic) = transfer.creditor_bic.as_deref() {
        agent(xml, "CdtrAgt", Some(bic));
    }
    party(xml, "Cdtr", &transfer.creditor_name);
    account(xml, "CdtrAcct", &transfer.creditor_iban);
    xml.open("RmtInf");
    xml.leaf("Ustrd", &transfer.remittance);
    xml.close("RmtInf");
    xml.close("CdtTrfTxInf");
}

/// A bank by BIC, or `Othr/Id NOTPROVIDED` where the BIC is unknown (the EPC's placeholder).
fn agent(xml: &mut Xml, tag: &str, bic: Option<&str>) {
    xml.open(tag);
    xml.open("FinInstnId");
    match bic {
        Some(bic) => xml.leaf("BICFI", bic),
        None => {
            xml.open("Othr");
            xml.leaf("Id", "NOTPROVIDED");
            xml.close("Othr");
        }
    }
    xml.close("FinInstnId");
    xml.close(tag);
}

fn party(xml: &mut Xml, tag: &str, name: &str) {
    xml.open(tag);
    xml.leaf("Nm", name);
    xml.close(tag);
}

fn account(xml: &mut Xml, tag: &str, iban: &str) {
    xml.open(tag);
    xml.open("Id");
    xml.leaf("IBAN", iban);
    xml.close("Id");
    xml.close(tag);
}

/// Euro cents as a decimal with exactly two places: 1 → `0.01`, 123456 → `1234.56`.
/// Callers pass non-negative cents (validated amounts and their sum).
fn euro_decimal(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A tiny writer for an indented XML document whose structure is fixed in code. Only text
/// and attribute values come from data, and both are escaped.
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn new() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    /// Opens an element; `tag` may carry fixed attributes written in code.
    fn open(&mut self, tag: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, tag: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push_str(">\n");
    }

    fn leaf(&mut self, tag: &str, text: &str) {
        self.indent();
        self.out
            .push_str(&format!("<{tag}>{}</{tag}>\n", escape(text)));
    }

    fn leaf_attr(&mut self, tag: &str, attr: &str, value: &str, text: &str) {
        self.indent();
        self.out.push_str(&format!(
            "<{tag} {attr}=\"{}\">{}</{tag}>\n",
            escape(value),
            escape(text)
        ));
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Escapes text for XML element content and double- or single-quoted attribute values.
/// The basic Latin set needs only `'`, but escaping everything special costs nothing and keeps
/// the writer safe if the character policy is ever widened.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `c` is in the EPC basic Latin character set.
fn is_sepa_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " /-?:().,'+".contains(c)
}

fn check_id(field: &str, id: &str) -> Result<String, SepaError> {
    let problem = if id.is_empty() {
        Some(IdProblem::Empty)
    } else if id.chars().count() > MAX_ID_CHARS {
        Some(IdProblem::TooLong)
    } else if let Some(c) = id.chars().find(|&c| !is_sepa_char(c) || c == ' ') {
        Some(IdProblem::Character(c))
    } else if id.starts_with('/') || id.ends_with('/') || id.contains("//") {
        Some(IdProblem::Slash)
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SepaError::Id {
            field: field.to_owned(),
            problem,
        }),
        None => Ok(id.to_owned()),
    }
}

/// A party name in the basic Latin set, cut to [`MAX_NAME_CHARS`]: what a SEPA file would
/// carry for `name`, or why it cannot carry it.
pub fn sepa_name(field: &str, name: &str) -> Result<String, SepaError> {
    let mut text = sepa_text(field, name)?;
    if text.len() > MAX_NAME_CHARS {
        // After conversion the text is ASCII, so a byte index is a character index.
        text.truncate(MAX_NAME_CHARS);
        text.truncate(text.trim_end().len());
    }
    Ok(text)
}

/// Converts free text to the EPC basic Latin set (see the module documentation), collapsing
/// whitespace and trimming; empty results and unspellable characters are errors.
fn sepa_text(field: &str, text: &str) -> Result<String, SepaError> {
    let chars = text.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Err(SepaError::TooLong {
            field: field.to_owned(),
            chars,
            max: MAX_INPUT_CHARS,
        });
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_sepa_char(c) {
            out.push(c);
        } else if c.is_whitespace() || c.is_control() {
            out.push(' ');
        } else if let Some(spelling) = latin_spelling(c).or_else(|| symbol_spelling(c)) {
            out.push_str(spelling);
        } else {
            return Err(SepaError::Unrepresentable {
                field: field.to_owned(),
                character: c,
            });
        }
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return Err(SepaError::Empty {
            field: field.to_owned(),
        });
    }
    Ok(collapsed)
}

/// Punctuation and symbols outside the basic set that have an obvious replacement.
fn symbol_spelling(c: char) -> Option<&'static str> {
    Some(match c {
        '&' => "+",
        '"' | '`' | '´' | '‘' | '’' | '‚' | '‛' | '“' | '”' | '„' | '«' | '»' | '‹' | '›' => {
            "'"
        }
        '_' | '‐' | '‑' | '‒' | '–' | '—' | '−' => "-",
        '[' | '{' | '<' => "(",
        ']' | '}' | '>' => ")",
        ';' => ",",
        '\\' => "/",
        '€' => "EUR",
        '·' | '…' => ".",
        c if c.is_ascii_punctuation() => ".",
        _ => return None,
    })
}

/// Latin letters with diacritics (Latin-1 Supplement, Latin Extended-A, Romanian comma-below)
/// spelled in the basic set: diacritics dropped, ligatures and special letters spelled out.
fn latin_spelling(c: char) -> Option<&'static str> {
    Some(match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'ª' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' | 'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ð' | 'Ď' | 'Đ' => "D",
        'ð' | 'ď' | 'đ' => "d",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĥ' | 'Ħ' => "H",
        'ĥ' | 'ħ' => "h",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'Ĵ' => "J",
        'ĵ' => "j",
        'Ķ' => "K",
        'ķ' | 'ĸ' => "k",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => "L",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' | 'Ŋ' => "N",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' | 'º' => "o",
        'Œ' => "OE",
        'œ' => "oe",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' | 'Ș' => "S",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' | 'ſ' => "s",
        'ß' => "ss",
        'ẞ' => "SS",
        // Combining diacritics (text in decomposed form): the base letter came just before.
        '\u{0300}'..='\u{036F}' => "",
        'Ţ' | 'Ť' | 'Ŧ' | 'Ț' => "T",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'Þ' => "TH",
        'þ' => "th",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ŵ' => "W",
        'ŵ' => "w",
        'Ý' | 'Ŷ' | 'Ÿ' => "Y",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// IBAN countries outside the SEPA scheme where pilots run or that border them, and the IBAN
/// length of each (ISO 13616 registry): merchants there hold such accounts, and their
/// treasurers pay them by other means than a SEPA file.
const OTHER_IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AE", 23),
    ("EG", 29),
    ("IL", 23),
    ("JO", 30),
    ("LB", 28),
    ("PS", 29),
    ("SA", 24),
    ("TN", 24),
    ("TR", 26),
];

/// SEPA scheme countries and territories with their own IBAN prefix, and the IBAN length of
/// each (ISO 13616 registry). French overseas departments and Åland use FR and FI IBANs;
/// Jersey, Guernsey and the Isle of Man GB ones. Albania and Montenegro joined the scheme's
/// scope in November 2024, Moldova and North Macedonia in March 2025, Serbia in May 2025.
const SEPA_IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AL", 28),
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("RS", 22),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("VA", 22),
];

/// Normalises an IBAN (spaces removed, upper case) and checks its form, country, length and
/// MOD 97-10 check digits. It may be outside SEPA: see [`require_sepa`] for a SEPA file.
pub fn normalise_iban(text: &str) -> Result<String, IbanError> {
    let iban: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(MAX_IBAN_CHARS + 1)
        .collect::<String>()
        .to_ascii_uppercase();
    let bytes = iban.as_bytes();
    let well_formed = (5..=MAX_IBAN_CHARS).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes[4..].iter().all(u8::is_ascii_alphanumeric);
    if !well_formed {
        return Err(IbanError::Format {
            iban: iban.chars().take(MAX_IBAN_CHARS).collect(),
        });
    }
    let country = &iban[..2];
    let expected = SEPA_IBAN_LENGTHS
        .iter()
        .chain(OTHER_IBAN_LENGTHS)
        .find(|(code, _)| *code == country)
        .map(|&(_, length)| length)
        .ok_or_else(|| IbanError::Country {
            country: country.to_owned(),
        })?;
    if bytes.len() != expected {
        return Err(IbanError::Length {
            country: country.to_owned(),
            expected,
            actual: bytes.len(),
        });
    }
    // MOD 97-10: move the first four characters to the end, read letters as 10..=35, and the
    // whole number must leave remainder 1 when divided by 97. Folding digit by digit keeps the
    // running value below 97 * 100.
    let mut remainder: u32 = 0;
    for &b in bytes[4..].iter().chain(&bytes[..4]) {
        let value = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        let scale = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * scale + value) % 97;
    }
    if remainder != 1 {
        return Err(IbanError::CheckDigits { iban });
    }
    Ok(iban)
}

/// Normalises a BIC (spaces removed, upper case) and checks its form: 4 letters or digits
/// (bank), 2 letters (country), 2 letters or digits (location), optionally 3 more (branch).
pub fn normalise_bic(text: &str) -> Option<String> {
    let bic: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(12)
        .collect::<String>()
        .to_ascii_uppercase();
    let b = bic.as_bytes();
    let upper_or_digit = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let valid = (b.len() == 8 || b.len() == 11)
        && upper_or_digit(&b[..4])
        && b[4..6].iter().all(u8::is_ascii_uppercase)
        && upper_or_digit(&b[6..]);
    valid.then_some(bic)
}

/// SEPA scheme countries and territories outside the European Economic Area: a transfer that
/// involves one (payee or payer) needs the payee bank's BIC as well as the IBAN (within the
/// EEA the IBAN is enough). Told by the IBAN's country, so the few territories outside the EEA
/// that use another country's IBANs (Saint-Pierre-et-Miquelon and Saint-Barthélemy use FR
/// ones) are not caught.
const SEPA_OUTSIDE_EEA: &[&str] = &[
    "AD", "AL", "CH", "GB", "GI", "MC", "MD", "ME", "MK", "RS", "SM", "VA",
];

/// Whether a SEPA transfer to the normalised IBAN `iban` must name the creditor's bank (BIC):
/// its country is in the scheme but outside the EEA.
pub fn needs_bic(iban: &str) -> bool {
    SEPA_OUTSIDE_EEA.contains(&iban.get(..2).unwrap_or(iban))
}

/// Refuses a normalised IBAN of a country outside the SEPA scheme.
pub fn require_sepa(iban: &str) -> Result<(), IbanError> {
    let country = iban.get(..2).unwrap_or(iban);
    if SEPA_IBAN_LENGTHS.iter().any(|(code, _)| *code == country) {
        Ok(())
    } else {
        Err(IbanError::NotSepa {
            country: country.to_owned(),
        })
    }
}

fn iban_field(field: &str, text: &str) -> Result<String, SepaError> {
    normalise_iban(text)
        .and_then(|iban| require_sepa(&iban).map(|()| iban))
        .map_err(|problem| SepaError::Iban {
            field: field.to_owned(),
            problem,
        })
}

fn bic_field(field: &str, text: Option<&str>) -> Result<Option<String>, SepaError> {
    text.map(|text| {
        normalise_bic(text).ok_or_else(|| SepaError::Bic {
            field: field.to_owned(),
            bic: text.chars().take(20).collect(),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Check digits computed for these BBANs with MOD 97-10 (98 - (BBAN + country + "00") mod 97).
    const DE: &str = "DE70500105171234567890";
    const ES: &str = "ES9121000418450200051332";
    const GR: &str = "GR1601101250000000012300695";
    const PT: &str = "PT50000201231234567890154";

    fn transfer(id: &str, cents: i64) -> Transfer {
        Transfer {
            end_to_end_id: id.to_owned(),
            creditor_name: "Panaderia Lopez".to_owned(),
            creditor_iban: ES.to_owned(),
            creditor_bic: Some("CAIXESBBXXX".to_owned()),
            amount_cents: cents,
            remittance: "Voucher redemption 2026-11".to_owned(),
        }
    }

    fn file(transfers: Vec<Transfer>) -> CreditTransferFile {
        CreditTransferFile {
            message_id: "COLEDGER-2026-11-001".to_owned(),
            created_at_unix_s: 1_795_385_212, // 2026-11-22T22:06:52Z
            execution_date: Date::new(2026, 11, 24).unwrap(),
            debtor: Debtor {
                name: "Stadt Musterhausen".to_owned(),
                iban: DE.to_owned(),
                bic: None,
            },
            transfers,
        }
    }

    fn field_of(error: SepaError) -> String {
        match error {
            SepaError::Iban { field, .. }
            | SepaError::Bic { field, .. }
            | SepaError::Amount { field, .. }
            | SepaError::Id { field, .. }
            | SepaError::DuplicateEndToEndId { field, .. }
            | SepaError::Empty { field }
            | SepaError::TooLong { field, .. }
            | SepaError::Unrepresentable { field, .. } => field,
            other => panic!("no field in {other:?}"),
        }
    }

    #[test]
    fn valid_ibans_from_four_countries_are_accepted_and_normalised() {
        for iban in [
            DE,
            ES,
            GR,
            PT,
            "DE89370400440532013000",
            "NL91ABNA0417164300",
        ] {
            assert_eq!(normalise_iban(iban).unwrap(), iban);
        }
        assert_eq!(normalise_iban("de70 5001 0517 1234 5678 90").unwrap(), DE);
        assert_eq!(
            normalise_iban(" GR16 0110 1250 0000 0001 2300 695 ").unwrap(),
            GR
        );
    }

    #[test]
    fn a_wrong_check_digit_is_refused() {
        assert_eq!(
            normalise_iban("DE71500105171234567890"),
            Err(IbanError::CheckDigits {
                iban: "DE71500105171234567890".to_owned()
            })
        );
        // One swapped pair of digits in the account number.
        assert!(matches!(
            normalise_iban("PT50000201231234567809154"),
            Err(IbanError::CheckDigits { .. })
        ));
    }

    #[test]
    fn ibans_outside_sepa_are_stored_but_not_put_in_a_sepa_file() {
        // Palestine, Jordan and Tunisia: valid IBANs of pilots outside SEPA.
        for iban in [
            "PS92PALS000000000400123456702",
            "JO94CBJO0010000000000131000302",
            "TN5910006035183598478831",
        ] {
            assert_eq!(normalise_iban(iban).unwrap(), iban);
            assert_eq!(
                require_sepa(iban),
                Err(IbanError::NotSepa {
                    country: iban[..2].to_owned()
                })
            );
            assert!(matches!(
                iban_field("creditor", iban),
                Err(SepaError::Iban {
                    problem: IbanError::NotSepa { .. },
                    ..
                })
            ));
        }
        assert_eq!(require_sepa("GR1601101250000000012300695"), Ok(()));
    }

    #[test]
    fn a_transfer_outside_the_eea_needs_the_banks_bic() {
        assert!(needs_bic("CH9300762011623852957"));
        assert!(needs_bic("AL47212110090000000235698741"));
        assert!(!needs_bic(PT));
        assert!(!needs_bic("NO9386011117947"));
        let mut to_zurich = file(vec![transfer("R1", 12_50)]);
        to_zurich.transfers[0].creditor_iban = "CH9300762011623852957".to_owned();
        to_zurich.transfers[0].creditor_bic = None;
        assert_eq!(
            pain001_xml(&to_zurich),
            Err(SepaError::BicRequired {
                field: "transfers[0].creditor_bic".to_owned(),
                country: "CH".to_owned()
            })
        );
        to_zurich.transfers[0].creditor_bic = Some("UBSWCHZH80A".to_owned());
        let xml = pain001_xml(&to_zurich).unwrap();
        assert!(xml.contains("<BICFI>UBSWCHZH80A</BICFI>"), "{xml}");
        // A payer outside the EEA: every payee's bank must be named, even inside it.
        let mut from_monaco = file(vec![transfer("R2", 5_00)]);
        from_monaco.debtor.iban = "MC5811222000010123456789030".to_owned();
        from_monaco.transfers[0].creditor_bic = None;
        assert_eq!(
            pain001_xml(&from_monaco),
            Err(SepaError::BicRequired {
                field: "transfers[0].creditor_bic".to_owned(),
                country: "MC".to_owned()
            })
        );
    }

    #[test]
    fn the_countries_that_joined_sepa_in_2024_and_2025_are_paid_by_a_sepa_file() {
        // The ISO 13616 registry's example IBANs of Albania, Montenegro, Moldova, North
        // Macedonia and Serbia.
        for iban in [
            "AL47212110090000000235698741",
            "ME25505000012345678951",
            "MD24AG000225100013104168",
            "MK07250120000058984",
            "RS35260005601001611379",
        ] {
            assert_eq!(normalise_iban(iban).unwrap(), iban);
            assert_eq!(require_sepa(iban), Ok(()), "{iban}");
        }
    }

    #[test]
    fn malformed_foreign_and_wrong_length_ibans_are_refused() {
        assert!(matches!(normalise_iban(""), Err(IbanError::Format { .. })));
        assert!(matches!(
            normalise_iban("D170500105171234567890"),
            Err(IbanError::Format { .. })
        ));
        assert!(matches!(
            normalise_iban("DE70-5001"),
            Err(IbanError::Format { .. })
        ));
        assert!(matches!(
            normalise_iban(&"DE".repeat(40)),
            Err(IbanError::Format { .. })
        ));
        assert_eq!(
            normalise_iban("US64SVBKUS6S3300958879"),
            Err(IbanError::Country {
                country: "US".to_owned()
            })
        );
        assert_eq!(
            normalise_iban("DE7050010517123456789"),
            Err(IbanError::Length {
                country: "DE".to_owned(),
                expected: 22,
                actual: 21
            })
        );
    }

    #[test]
    fn every_single_character_typo_in_an_iban_is_caught() {
        // MOD 97-10 detects every substitution of one character; try them all on each example.
        for iban in [DE, ES, GR, PT] {
            for position in 2..iban.len() {
                for replacement in ('0'..='9').chain('A'..='Z') {
                    let original = iban.as_bytes()[position];
                    if char::from(original) == replacement
                        || (position < 4 && !replacement.is_ascii_digit())
                        || (original.is_ascii_digit() != replacement.is_ascii_digit())
                    {
                        continue;
                    }
                    let mut typo = iban.to_owned();
                    typo.replace_range(position..=position, &replacement.to_string());
                    assert!(
                        matches!(normalise_iban(&typo), Err(IbanError::CheckDigits { .. })),
                        "{typo} passed"
                    );
                }
            }
        }
    }

    #[test]
    fn bics_have_eight_or_eleven_characters_of_the_right_kinds() {
        assert_eq!(normalise_bic("caixesbb").unwrap(), "CAIXESBB");
        assert_eq!(normalise_bic("COBA DE FF XXX").unwrap(), "COBADEFFXXX");
        assert!(normalise_bic("COBADEFFXX").is_none());
        assert!(normalise_bic("COBA1EFF").is_none());
        assert!(normalise_bic("COB-DEFF").is_none());
        assert!(normalise_bic("").is_none());
    }

    #[test]
    fn amounts_are_written_from_cents_exactly() {
        assert_eq!(euro_decimal(1), "0.01");
        assert_eq!(euro_decimal(10), "0.10");
        assert_eq!(euro_decimal(100), "1.00");
        assert_eq!(euro_decimal(123_456), "1234.56");
        assert_eq!(euro_decimal(MAX_AMOUNT_CENTS), "999999999.99");
        // The ledger parses back exactly what we write, across every cents pattern.
        for cents in (0..100_000).chain(MAX_AMOUNT_CENTS - 1_000..=MAX_AMOUNT_CENTS) {
            let text = euro_decimal(cents);
            assert_eq!(
                ledger::Amount::parse(&text, 2).unwrap().minor(),
                cents,
                "{text}"
            );
        }
    }

    #[test]
    fn the_control_sum_and_count_are_exact() {
        let xml = pain001_xml(&file(vec![
            transfer("E2E-1", 1),
            transfer("E2E-2", 10_00),
            transfer("E2E-3", 99_999_999_999),
        ]))
        .unwrap();
        assert_eq!(
            xml.matches("<CtrlSum>1000000010.00</CtrlSum>").count(),
            2,
            "{xml}"
        );
        assert_eq!(xml.matches("<NbOfTxs>3</NbOfTxs>").count(), 2);
        assert!(xml.contains("<InstdAmt Ccy=\"EUR\">0.01</InstdAmt>"));
        assert!(xml.contains("<InstdAmt Ccy=\"EUR\">999999999.99</InstdAmt>"));
    }

    #[test]
    fn the_document_has_the_sepa_shape() {
        let mut bicless = transfer("E2E-2", 5_00);
        bicless.creditor_bic = None;
        let xml = pain001_xml(&file(vec![transfer("E2E-1", 1_00), bicless])).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.001.001.09\">"));
        for needle in [
            "<CreDtTm>2026-11-22T22:06:52Z</CreDtTm>",
            "<PmtMtd>TRF</PmtMtd>",
            "<BtchBookg>true</BtchBookg>",
            "<Cd>SEPA</Cd>",
            "<Dt>2026-11-24</Dt>",
            "<Id>NOTPROVIDED</Id>",
            "<ChrgBr>SLEV</ChrgBr>",
            "<IBAN>ES9121000418450200051332</IBAN>",
        ] {
            assert!(xml.contains(needle), "{needle} missing from {xml}");
        }
        // Only the transfer with a BIC names its creditor's bank.
        assert_eq!(xml.matches("<CdtrAgt>").count(), 1);
        assert_eq!(xml.matches("<BICFI>CAIXESBBXXX</BICFI>").count(), 1);
    }

    #[test]
    fn xml_special_characters_are_escaped() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("plain"), "plain");
        let mut quoted = transfer("E2E-1", 1_00);
        quoted.creditor_name = "O'Brien & Sons <Ltd>".to_owned();
        let xml = pain001_xml(&file(vec![quoted])).unwrap();
        assert!(xml.contains("<Nm>O&apos;Brien + Sons (Ltd)</Nm>"), "{xml}");
    }

    #[test]
    fn latin_text_is_transliterated_to_the_basic_set() {
        let cases = [
            ("Café Ñandú & Co.", "Cafe Nandu + Co."),
            ("Bäckerei Müller-Straße", "Backerei Muller-Strasse"),
            ("Açougue São João", "Acougue Sao Joao"),
            ("Łódź Œuvre Ærø", "Lodz OEuvre AEro"),
            ("Brânzeturi Ștefănescu", "Branzeturi Stefanescu"),
            ("“Quoted” — 50 €", "'Quoted' - 50 EUR"),
            ("Shop@Home #1; [x]", "Shop.Home .1, (x)"),
            ("  two\t\nlines  ", "two lines"),
            ("Cafe\u{301} Nin\u{303}o GROẞ", "Cafe Nino GROSS"),
        ];
        for (input, expected) in cases {
            assert_eq!(sepa_text("f", input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn greek_and_arabic_letters_are_refused_by_name() {
        let mut greek = transfer("E2E-1", 1_00);
        greek.creditor_name = "Φούρνος Αθηνά".to_owned();
        let error = pain001_xml(&file(vec![transfer("E2E-0", 1), greek])).unwrap_err();
        assert_eq!(
            error,
            SepaError::Unrepresentable {
                field: "transfers[1].creditor_name".to_owned(),
                character: 'Φ'
            }
        );
        assert!(error.to_string().contains("U+03A6"), "{error}");
        assert!(matches!(
            sepa_text("remittance", "مخبز"),
            Err(SepaError::Unrepresentable {
                character: 'م', ..
            })
        ));
        assert!(sepa_text("remittance", "paid 🙂").is_err());
    }

    #[test]
    fn long_names_are_cut_and_long_remittance_is_refused() {
        let mut long = transfer("E2E-1", 1_00);
        long.creditor_name = format!("{} Cooperativa", "x".repeat(65));
        let xml = pain001_xml(&file(vec![long.clone()])).unwrap();
        assert!(
            xml.contains(&format!("<Nm>{} Coop</Nm>", "x".repeat(65))),
            "{xml}"
        );

        long.remittance = "ß".repeat(71); // 142 characters once spelled out
        let error = pain001_xml(&file(vec![long])).unwrap_err();
        assert_eq!(
            error,
            SepaError::TooLong {
                field: "transfers[0].remittance".to_owned(),
                chars: 142,
                max: MAX_REMITTANCE_CHARS
            }
        );
        assert!(sepa_text("f", &"a".repeat(MAX_INPUT_CHARS + 1)).is_err());
    }

    #[test]
    fn empty_names_and_remittance_are_refused() {
        let mut blank = transfer("E2E-1", 1_00);
        blank.remittance = " \t ".to_owned();
        assert_eq!(
            field_of(pain001_xml(&file(vec![blank])).unwrap_err()),
            "transfers[0].remittance"
        );
        let mut nameless = file(vec![transfer("E2E-1", 1_00)]);
        nameless.debtor.name = String::new();
        assert_eq!(field_of(pain001_xml(&nameless).unwrap_err()), "debtor.name");
    }

    #[test]
    fn identifiers_are_checked_not_converted() {
        let bad = |id: &str| check_id("message_id", id).unwrap_err();
        assert!(check_id("message_id", "COLEDGER/2026-11/001").is_ok());
        assert!(check_id("message_id", &"A".repeat(35)).is_ok());
        assert_eq!(
            bad(""),
            SepaError::Id {
                field: "message_id".to_owned(),
                problem: IdProblem::Empty
            }
        );
        assert!(matches!(
            bad(&"A".repeat(36)),
            SepaError::Id {
                problem: IdProblem::TooLong,
                ..
            }
        ));
        assert!(matches!(
            bad("Zahlung_1"),
            SepaError::Id {
                problem: IdProblem::Character('_'),
                ..
            }
        ));
        assert!(matches!(
            bad("a b"),
            SepaError::Id {
                problem: IdProblem::Character(' '),
                ..
            }
        ));
        assert!(matches!(
            bad("Café"),
            SepaError::Id {
                problem: IdProblem::Character('é'),
                ..
            }
        ));
        for slashed in ["/abc", "abc/", "a//b"] {
            assert!(matches!(
                bad(slashed),
                SepaError::Id {
                    problem: IdProblem::Slash,
                    ..
                }
            ));
        }
    }

    #[test]
    fn errors_name_the_offending_transfer_and_field() {
        let mut bad_iban = transfer("E2E-2", 1_00);
        bad_iban.creditor_iban = "ES9221000418450200051332".to_owned();
        let error = pain001_xml(&file(vec![transfer("E2E-1", 1), bad_iban])).unwrap_err();
        assert_eq!(field_of(error.clone()), "transfers[1].creditor_iban");
        assert!(
            error
                .to_string()
                .starts_with("transfers[1].creditor_iban: "),
            "{error}"
        );

        let mut bad_bic = transfer("E2E-1", 1_00);
        bad_bic.creditor_bic = Some("NOTABIC".to_owned());
        assert_eq!(
            field_of(pain001_xml(&file(vec![bad_bic])).unwrap_err()),
            "transfers[0].creditor_bic"
        );

        let mut debtor_iban = file(vec![transfer("E2E-1", 1_00)]);
        debtor_iban.debtor.iban = "DE00500105171234567890".to_owned();
        assert_eq!(
            field_of(pain001_xml(&debtor_iban).unwrap_err()),
            "debtor.iban"
        );
    }

    #[test]
    fn amounts_outside_the_sepa_range_are_refused() {
        for cents in [0, -1, MAX_AMOUNT_CENTS + 1, i64::MAX] {
            assert_eq!(
                pain001_xml(&file(vec![transfer("E2E-1", cents)])).unwrap_err(),
                SepaError::Amount {
                    field: "transfers[0].amount_cents".to_owned(),
                    amount_cents: cents
                }
            );
        }
    }

    #[test]
    fn empty_files_duplicate_ids_and_past_dates_are_refused() {
        assert_eq!(pain001_xml(&file(vec![])), Err(SepaError::NoTransfers));
        assert_eq!(
            pain001_xml(&file(vec![
                transfer("E2E-1", 1),
                transfer("E2E-2", 2),
                transfer("E2E-1", 3)
            ])),
            Err(SepaError::DuplicateEndToEndId {
                field: "transfers[2].end_to_end_id".to_owned(),
                id: "E2E-1".to_owned(),
                first: 0
            })
        );
        let mut past = file(vec![transfer("E2E-1", 1)]);
        past.execution_date = Date::new(2026, 11, 21).unwrap();
        assert!(matches!(
            pain001_xml(&past),
            Err(SepaError::ExecutionBeforeCreation { .. })
        ));
        past.execution_date = Date::new(2026, 11, 22).unwrap();
        assert!(pain001_xml(&past).is_ok());
        past.created_at_unix_s = -5;
        assert!(matches!(pain001_xml(&past), Err(SepaError::CreatedAt(_))));
    }
}
