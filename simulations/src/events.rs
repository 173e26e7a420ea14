//! The research event format (`coledger-events` v1): types, a streaming reader for CSV and
//! JSON lines, and a writer for both. `EVENTS.md` is the human description of the format.
//!
//! Pseudonyms, categories, programmes, areas and units are interned into a [`Dictionary`]
//! while reading, so an [`Event`] is a small `Copy` struct of integers and ten million of them
//! never exist as strings. Money is an integer count of the unit's minor units.

use std::borrow::Cow;
use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Files come from our own export or simulators; a fast, non-DoS-resistant hash is fine.
type Map<K, V> = HashMap<K, V, RandomState>;
use std::io::{BufRead, Write};

/// First line of a CSV event file.
pub const CSV_MAGIC: &str = "# coledger-events v1";
/// The CSV header line that follows [`CSV_MAGIC`].
pub const CSV_HEADER: &str = "time,kind,reason,source,source_kind,source_category,target,target_kind,target_category,amount_minor,unit,programme,area";
/// The schema name in the first line of a JSON-lines event file.
pub const SCHEMA_NAME: &str = "coledger-events";
/// The schema version this module reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest accepted line in bytes; a longer line is an error, not a silent truncation.
pub const MAX_LINE_BYTES: usize = 4096;
/// Longest pseudonym, category, programme, area or unit code, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;
/// Most distinct units one stream may hold (unit ids are `u16`).
pub const MAX_UNITS: usize = 1024;
/// Largest amount of one event, in minor units (the ledger's 2^53 - 1).
pub const MAX_AMOUNT_MINOR: i64 = 9_007_199_254_740_991;

/// What an event does to the money stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Money enters circulation (issuance of a benefit, a reward); the source is an issuer.
    Deposit,
    /// Money moves between two holders (a payment, a wage, a supplier bill).
    Transfer,
    /// Money leaves circulation (redemption, its fee, expiry, demurrage, outflow); the target
    /// is a system account or the issuer.
    Withdraw,
}

/// Why an event happened; each reason belongs to exactly one [`EventKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Deposit: a benefit or other public payment.
    Issuance,
    /// Deposit: an incentive reward (waste points, time credits).
    Reward,
    /// Transfer: a purchase.
    Payment,
    /// Transfer: wages paid by an employer.
    Wage,
    /// Transfer: a business paying its supplier.
    Supply,
    /// Withdraw: units exchanged for national money (net of the fee).
    Redemption,
    /// Withdraw: the redemption fee.
    Fee,
    /// Withdraw: unspent units that expired.
    Expiry,
    /// Withdraw: a holding charge on balances.
    Demurrage,
    /// Withdraw: money leaving the measured economy otherwise (national money paid out).
    Outflow,
}

/// The role of a participant; fixed for a pseudonym within one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParticipantKind {
    /// Issues units (a municipality's programme budget).
    Issuer,
    /// A household or person.
    Household,
    /// A local shop or business.
    Merchant,
    /// A local social enterprise or cooperative.
    SocialEnterprise,
    /// A firm outside the local economy.
    Outside,
    /// A system account (redemption clearing, fees, expired, demurrage).
    System,
}

impl ParticipantKind {
    /// Whether money held by this participant counts as inside the local economy.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            Self::Household | Self::Merchant | Self::SocialEnterprise
        )
    }
    /// Whether this participant can hold circulating money (everyone but issuers and system).
    pub fn is_holder(self) -> bool {
        !matches!(self, Self::Issuer | Self::System)
    }
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::Household => "household",
            Self::Merchant => "merchant",
            Self::SocialEnterprise => "social_enterprise",
            Self::Outside => "outside",
            Self::System => "system",
        }
    }
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "issuer" => Self::Issuer,
            "household" => Self::Household,
            "merchant" => Self::Merchant,
            "social_enterprise" => Self::SocialEnterprise,
            "outside" => Self::Outside,
            "system" => Self::System,
            _ => return None,
        })
    }
}

impl EventKind {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Transfer => "transfer",
            Self::Withdraw => "withdraw",
        }
    }
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "deposit" => Self::Deposit,
            "transfer" => Self::Transfer,
            "withdraw" => Self::Withdraw,
            _ => return None,
        })
    }
}

impl Reason {
    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuance => "issuance",
            Self::Reward => "reward",
            Self::Payment => "payment",
            Self::Wage => "wage",
            Self::Supply => "supply",
            Self::Redemption => "redemption",
            Self::Fee => "fee",
            Self::Expiry => "expiry",
            Self::Demurrage => "demurrage",
            Self::Outflow => "outflow",
        }
    }
    /// The event kind this reason belongs to.
    pub fn kind(self) -> EventKind {
        match self {
            Self::Issuance | Self::Reward => EventKind::Deposit,
            Self::Payment | Self::Wage | Self::Supply => EventKind::Transfer,
            Self::Redemption | Self::Fee | Self::Expiry | Self::Demurrage | Self::Outflow => {
                EventKind::Withdraw
            }
        }
    }
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "issuance" => Self::Issuance,
            "reward" => Self::Reward,
            "payment" => Self::Payment,
            "wage" => Self::Wage,
            "supply" => Self::Supply,
            "redemption" => Self::Redemption,
            "fee" => Self::Fee,
            "expiry" => Self::Expiry,
            "demurrage" => Self::Demurrage,
            "outflow" => Self::Outflow,
            _ => return None,
        })
    }
}

/// A participant known to a [`Dictionary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// The pseudonym as written in the file.
    pub name: Box<str>,
    /// Its role.
    pub kind: ParticipantKind,
    /// Label id of its category (0 = none), e.g. a merchant category.
    pub category: u32,
}

/// One ledger event: integers only; strings live in the [`Dictionary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Unix time in seconds (UTC); exports may coarsen it to the day.
    pub time_s: i64,
    /// Why it happened (its [`EventKind`] is `reason.kind()`).
    pub reason: Reason,
    /// Participant id of the payer (the issuer for a deposit).
    pub source: u32,
    /// Participant id of the payee (a system account for a withdraw).
    pub target: u32,
    /// Amount in the unit's minor units, positive.
    pub amount_minor: i64,
    /// Unit id.
    pub unit: u16,
    /// Label id of the programme (0 = none).
    pub programme: u32,
    /// Label id of the area (0 = none).
    pub area: u32,
}

impl Event {
    /// The event kind, derived from the reason.
    pub fn kind(&self) -> EventKind {
        self.reason.kind()
    }
}

/// Interned strings of one stream: participants, labels (categories, programmes, areas), units.
#[derive(Debug)]
pub struct Dictionary {
    participants: Vec<Participant>,
    participant_ids: Map<Box<str>, u32>,
    labels: Vec<Box<str>>,
    label_ids: Map<Box<str>, u32>,
    units: Vec<Box<str>>,
}

impl Default for Dictionary {
    fn default() -> Self {
        Self::new()
    }
}

impl Dictionary {
    /// An empty dictionary; label id 0 is the empty label.
    pub fn new() -> Self {
        let mut label_ids = Map::default();
        label_ids.insert(Box::<str>::from(""), 0);
        Self {
            participants: Vec::new(),
            participant_ids: Map::default(),
            labels: vec![Box::from("")],
            label_ids,
            units: Vec::new(),
        }
    }

    /// The id of a label, interning it if new.
    pub fn label(&mut self, text: &str) -> Result<u32, FieldError> {
        if text.is_empty() {
            return Ok(0);
        }
        if let Some(&id) = self.label_ids.get(text) {
            return Ok(id);
        }
        check_label(text)?;
        let id = u32::try_from(self.labels.len()).map_err(|_| FieldError::TooMany("labels"))?;
        self.labels.push(Box::from(text));
        self.label_ids.insert(Box::from(text), id);
        Ok(id)
    }

    /// The id of a known label, without interning.
    pub fn label_id(&self, text: &str) -> Option<u32> {
        self.label_ids.get(text).copied()
    }

    /// The id of a unit code, interning it if new.
    pub fn unit(&mut self, code: &str) -> Result<u16, FieldError> {
        if let Some(position) = self.units.iter().position(|u| &**u == code) {
            return u16::try_from(position).map_err(|_| FieldError::TooMany("units"));
        }
        if code.is_empty() {
            return Err(FieldError::Empty("unit"));
        }
        check_label(code)?;
        if self.units.len() >= MAX_UNITS {
            return Err(FieldError::TooMany("units"));
        }
        self.units.push(Box::from(code));
        u16::try_from(self.units.len() - 1).map_err(|_| FieldError::TooMany("units"))
    }

    /// The id of a participant, registering it if new; a known pseudonym must keep its kind.
    pub fn participant(
        &mut self,
        name: &str,
        kind: ParticipantKind,
        category: &str,
    ) -> Result<u32, FieldError> {
        if let Some(&id) = self.participant_ids.get(name) {
            let known = self.participants[id as usize].kind;
            if known != kind {
                return Err(FieldError::KindChanged {
                    pseudonym: name.to_owned(),
                    was: known.as_str(),
                    now: kind.as_str(),
                });
            }
            return Ok(id);
        }
        if name.is_empty() {
            return Err(FieldError::Empty("pseudonym"));
        }
        check_label(name)?;
        let category = self.label(category)?;
        let id = u32::try_from(self.participants.len())
            .map_err(|_| FieldError::TooMany("participants"))?;
        self.participants.push(Participant {
            name: Box::from(name),
            kind,
            category,
        });
        self.participant_ids.insert(Box::from(name), id);
        Ok(id)
    }

    /// The participant with this id.
    pub fn participant_info(&self, id: u32) -> &Participant {
        &self.participants[id as usize]
    }
    /// All participants, indexed by id.
    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }
    /// The text of a label id.
    pub fn label_text(&self, id: u32) -> &str {
        &self.labels[id as usize]
    }
    /// Number of labels (ids are `0..label_count()`).
    pub fn label_count(&self) -> usize {
        self.labels.len()
    }
    /// The code of a unit id.
    pub fn unit_code(&self, id: u16) -> &str {
        &self.units[usize::from(id)]
    }
    /// All unit codes, indexed by id.
    pub fn units(&self) -> &[Box<str>] {
        &self.units
    }
}

/// Labels travel unquoted in CSV, so they may not hold separators, quotes or controls.
fn check_label(text: &str) -> Result<(), FieldError> {
    if text.len() > MAX_LABEL_BYTES {
        return Err(FieldError::TooLong {
            max: MAX_LABEL_BYTES,
        });
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(FieldError::BadCharacter(bad));
    }
    Ok(())
}

/// What is wrong with one field or row.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    /// A required field is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A label is longer than allowed.
    #[error("label longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A label holds a character outside `[A-Za-z0-9_.:-]`.
    #[error("character {0:?} not allowed in a label (use A-Z a-z 0-9 _ - . :)")]
    BadCharacter(char),
    /// A field has an unknown value.
    #[error("unknown {field} {value:?}")]
    Unknown {
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A number could not be read.
    #[error("{field} is not an integer: {value:?}")]
    NotInteger {
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// The amount is zero, negative or too large.
    #[error("amount_minor must be 1..={MAX_AMOUNT_MINOR}, got {0}")]
    BadAmount(i64),
    /// Kind and reason disagree.
    #[error("reason {reason} is not a {kind}")]
    ReasonMismatch {
        /// The kind column.
        kind: &'static str,
        /// The reason column.
        reason: &'static str,
    },
    /// A participant's role does not fit the event (e.g. a deposit not from an issuer).
    #[error("{0}")]
    Role(&'static str),
    /// A pseudonym appeared with two kinds.
    #[error("pseudonym {pseudonym} was a {was}, now a {now}")]
    KindChanged {
        /// The pseudonym.
        pseudonym: String,
        /// First kind seen.
        was: &'static str,
        /// Kind on this row.
        now: &'static str,
    },
    /// Too many distinct values for the id width.
    #[error("too many distinct {0}")]
    TooMany(&'static str),
    /// Wrong number of columns.
    #[error("expected 13 columns, found {0}")]
    Columns(usize),
    /// A JSON line could not be decoded.
    #[error("bad JSON: {0}")]
    Json(String),
    /// Time went backwards.
    #[error(
        "time {time_s} is before the previous event's {previous_s}; events must be in time order"
    )]
    OutOfOrder {
        /// This event's time.
        time_s: i64,
        /// The previous event's time.
        previous_s: i64,
    },
}

/// An error reading an event stream, with the 1-based line it happened on.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The underlying reader failed.
    #[error("line {line}: read failed: {source}")]
    Io {
        /// Line number.
        line: u64,
        /// The IO error.
        source: std::io::Error,
    },
    /// The first lines are not a v1 CSV or JSON-lines header.
    #[error("line {line}: not a coledger-events v1 stream: {detail}")]
    Header {
        /// Line number.
        line: u64,
        /// What was expected.
        detail: String,
    },
    /// A row is malformed.
    #[error("line {line}: {error}")]
    Row {
        /// Line number.
        line: u64,
        /// What is wrong.
        error: FieldError,
    },
    /// A line is longer than [`MAX_LINE_BYTES`].
    #[error("line {line}: longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong {
        /// Line number.
        line: u64,
    },
}

/// The two encodings of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated, first line [`CSV_MAGIC`], then [`CSV_HEADER`].
    Csv,
    /// One JSON object per line, first line `{"schema":"coledger-events","version":1}`.
    JsonLines,
}

/// The fields of one row as text, shared by the CSV and JSON decoders (JSON strings with
/// escapes are owned, all others borrowed).
#[derive(serde::Deserialize)]
struct RawRow<'a> {
    time: i64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    source_kind: Cow<'a, str>,
    #[serde(default, borrow)]
    source_category: Cow<'a, str>,
    #[serde(borrow)]
    target: Cow<'a, str>,
    #[serde(borrow)]
    target_kind: Cow<'a, str>,
    #[serde(default, borrow)]
    target_category: Cow<'a, str>,
    amount_minor: i64,
    #[serde(borrow)]
    unit: Cow<'a, str>,
    #[serde(default, borrow)]
    programme: Cow<'a, str>,
    #[serde(default, borrow)]
    area: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonHeader {
    schema: String,
    version: u32,
}

/// Streams events from CSV or JSON lines (detected from the first line), checking each row.
pub struct EventReader<R> {
    input: R,
    format: Format,
    line: u64,
    buffer: String,
    dictionary: Dictionary,
    last_time_s: Option<i64>,
}

impl<R: BufRead> EventReader<R> {
    /// Reads the header and detects the format.
    pub fn new(mut input: R) -> Result<Self, ReadError> {
        let mut buffer = String::new();
        let mut line = 0;
        read_line(&mut input, &mut buffer, &mut line)?;
        let first = buffer.trim_end();
        let format = if first == CSV_MAGIC {
            read_line(&mut input, &mut buffer, &mut line)?;
            if buffer.trim_end() != CSV_HEADER {
                return Err(ReadError::Header {
                    line,
                    detail: format!("expected {CSV_HEADER}"),
                });
            }
            Format::Csv
        } else if first.starts_with('{') {
            let header: JsonHeader =
                serde_json::from_str(first).map_err(|e| ReadError::Header {
                    line,
                    detail: e.to_string(),
                })?;
            if header.schema != SCHEMA_NAME || header.version != SCHEMA_VERSION {
                return Err(ReadError::Header {
                    line,
                    detail: format!("schema {} version {}", header.schema, header.version),
                });
            }
            Format::JsonLines
        } else {
            return Err(ReadError::Header {
                line,
                detail: format!("expected {CSV_MAGIC:?} or a JSON schema line"),
            });
        };
        Ok(Self {
            input,
            format,
            line,
            buffer,
            dictionary: Dictionary::new(),
            last_time_s: None,
        })
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The strings interned so far.
    pub fn dictionary(&self) -> &Dictionary {
        &self.dictionary
    }

    /// Gives up the dictionary once reading is done.
    pub fn into_dictionary(self) -> Dictionary {
        self.dictionary
    }

    /// The next event, or `None` at the end; blank lines are skipped.
    pub fn next_event(&mut self) -> Result<Option<Event>, ReadError> {
        loop {
            if read_line(&mut self.input, &mut self.buffer, &mut self.line)? == 0 {
                return Ok(None);
            }
            let text = self.buffer.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let line = self.line;
            let event = match self.format {
                Format::Csv => split_csv(text).and_then(|raw| intern(&mut self.dictionary, &raw)),
                Format::JsonLines => serde_json::from_str::<RawRow<'_>>(text)
                    .map_err(|e| FieldError::Json(e.to_string()))
                    .and_then(|raw| intern(&mut self.dictionary, &raw)),
            }
            .map_err(|error| ReadError::Row { line, error })?;
            if let Some(previous_s) = self.last_time_s
                && event.time_s < previous_s
            {
                let error = FieldError::OutOfOrder {
                    time_s: event.time_s,
                    previous_s,
                };
                return Err(ReadError::Row { line, error });
            }
            self.last_time_s = Some(event.time_s);
            return Ok(Some(event));
        }
    }
}

fn read_line<R: BufRead>(
    input: &mut R,
    buffer: &mut String,
    line: &mut u64,
) -> Result<usize, ReadError> {
    buffer.clear();
    *line += 1;
    let mut limited = <&mut R as std::io::Read>::take(input, MAX_LINE_BYTES as u64 + 1);
    let read = limited.read_line(buffer).map_err(|source| ReadError::Io {
        line: *line,
        source,
    })?;
    if buffer.len() > MAX_LINE_BYTES {
        return Err(ReadError::LineTooLong { line: *line });
    }
    Ok(read)
}

fn split_csv(text: &str) -> Result<RawRow<'_>, FieldError> {
    let mut fields = [""; 13];
    let mut count = 0;
    for field in text.split(',') {
        if count < fields.len() {
            fields[count] = field;
        }
        count += 1;
    }
    if count != fields.len() {
        return Err(FieldError::Columns(count));
    }
    let integer = |field: &'static str, value: &str| {
        value.parse::<i64>().map_err(|_| FieldError::NotInteger {
            field,
            value: value.to_owned(),
        })
    };
    Ok(RawRow {
        time: integer("time", fields[0])?,
        kind: Cow::Borrowed(fields[1]),
        reason: Cow::Borrowed(fields[2]),
        source: Cow::Borrowed(fields[3]),
        source_kind: Cow::Borrowed(fields[4]),
        source_category: Cow::Borrowed(fields[5]),
        target: Cow::Borrowed(fields[6]),
        target_kind: Cow::Borrowed(fields[7]),
        target_category: Cow::Borrowed(fields[8]),
        amount_minor: integer("amount_minor", fields[9])?,
        unit: Cow::Borrowed(fields[10]),
        programme: Cow::Borrowed(fields[11]),
        area: Cow::Borrowed(fields[12]),
    })
}

fn unknown(field: &'static str, value: &str) -> FieldError {
    FieldError::Unknown {
        field,
        value: value.to_owned(),
    }
}

fn intern(dictionary: &mut Dictionary, raw: &RawRow<'_>) -> Result<Event, FieldError> {
    let kind = EventKind::parse(&raw.kind).ok_or_else(|| unknown("kind", &raw.kind))?;
    let reason = Reason::parse(&raw.reason).ok_or_else(|| unknown("reason", &raw.reason))?;
    if reason.kind() != kind {
        return Err(FieldError::ReasonMismatch {
            kind: kind.as_str(),
            reason: reason.as_str(),
        });
    }
    let source_kind = ParticipantKind::parse(&raw.source_kind)
        .ok_or_else(|| unknown("source_kind", &raw.source_kind))?;
    let target_kind = ParticipantKind::parse(&raw.target_kind)
        .ok_or_else(|| unknown("target_kind", &raw.target_kind))?;
    check_roles(kind, source_kind, target_kind)?;
    if raw.amount_minor <= 0 || raw.amount_minor > MAX_AMOUNT_MINOR {
        return Err(FieldError::BadAmount(raw.amount_minor));
    }
    let source = dictionary.participant(&raw.source, source_kind, &raw.source_category)?;
    let target = dictionary.participant(&raw.target, target_kind, &raw.target_category)?;
    if source == target {
        return Err(FieldError::Role(
            "source and target are the same participant",
        ));
    }
    Ok(Event {
        time_s: raw.time,
        reason,
        source,
        target,
        amount_minor: raw.amount_minor,
        unit: dictionary.unit(&raw.unit)?,
        programme: dictionary.label(&raw.programme)?,
        area: dictionary.label(&raw.area)?,
    })
}

/// Deposits come from issuers (or system) to holders, transfers move between holders,
/// withdrawals go from holders to the issuer or a system account.
pub fn check_roles(
    kind: EventKind,
    source: ParticipantKind,
    target: ParticipantKind,
) -> Result<(), FieldError> {
    match kind {
        EventKind::Deposit if source.is_holder() => Err(FieldError::Role(
            "a deposit's source must be an issuer or system account",
        )),
        EventKind::Withdraw if target.is_holder() => Err(FieldError::Role(
            "a withdraw's target must be an issuer or system account",
        )),
        EventKind::Transfer if !source.is_holder() || !target.is_holder() => {
            Err(FieldError::Role("a transfer moves money between holders"))
        }
        EventKind::Deposit if !target.is_holder() => {
            Err(FieldError::Role("a deposit's target must be a holder"))
        }
        EventKind::Withdraw if !source.is_holder() => {
            Err(FieldError::Role("a withdraw's source must be a holder"))
        }
        _ => Ok(()),
    }
}

/// Writes events in either encoding; the header is written on creation.
pub struct EventWriter<W: Write> {
    output: W,
    format: Format,
    line: String,
}

impl<W: Write> EventWriter<W> {
    /// Writes the header lines.
    pub fn new(mut output: W, format: Format) -> std::io::Result<Self> {
        match format {
            Format::Csv => writeln!(output, "{CSV_MAGIC}\n{CSV_HEADER}")?,
            Format::JsonLines => writeln!(
                output,
                "{{\"schema\":\"{SCHEMA_NAME}\",\"version\":{SCHEMA_VERSION}}}"
            )?,
        }
        Ok(Self {
            output,
            format,
            line: String::with_capacity(256),
        })
    }

    /// Writes one event; its ids must come from `dictionary`.
    pub fn write(&mut self, event: &Event, dictionary: &Dictionary) -> std::io::Result<()> {
        use std::fmt::Write as _;
        let source = dictionary.participant_info(event.source);
        let target = dictionary.participant_info(event.target);
        let fields = [
            ("kind", event.kind().as_str()),
            ("reason", event.reason.as_str()),
            ("source", &*source.name),
            ("source_kind", source.kind.as_str()),
            ("source_category", dictionary.label_text(source.category)),
            ("target", &*target.name),
            ("target_kind", target.kind.as_str()),
            ("target_category", dictionary.label_text(target.category)),
        ];
        self.line.clear();
        // Labels are restricted to [A-Za-z0-9_.:-], so neither encoding needs escaping.
        let result = match self.format {
            Format::Csv => {
                let _ = write!(self.line, "{}", event.time_s);
                for (_, value) in fields {
                    let _ = write!(self.line, ",{value}");
                }
                writeln!(
                    self.line,
                    ",{},{},{},{}",
                    event.amount_minor,
                    dictionary.unit_code(event.unit),
                    dictionary.label_text(event.programme),
                    dictionary.label_text(event.area)
                )
            }
            Format::JsonLines => {
                let _ = write!(self.line, "{{\"time\":{}", event.time_s);
                for (name, value) in fields {
                    let _ = write!(self.line, ",\"{name}\":\"{value}\"");
                }
                writeln!(
                    self.line,
                    ",\"amount_minor\":{},\"unit\":\"{}\",\"programme\":\"{}\",\"area\":\"{}\"}}",
                    event.amount_minor,
                    dictionary.unit_code(event.unit),
                    dictionary.label_text(event.programme),
                    dictionary.label_text(event.area)
                )
            }
        };
        result.map_err(std::io::Error::other)?;
        self.output.write_all(self.line.as_bytes())
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.output.flush()?;
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = "# coledger-events v1
time,kind,reason,source,source_kind,source_category,target,target_kind,target_category,amount_minor,unit,programme,area
86400,deposit,issuance,city,issuer,,h1,household,,10000,PGI,mi,north
90000,transfer,payment,h1,household,,m1,merchant,food,4000,PGI,,north

93600,withdraw,redemption,m1,merchant,food,clearing,system,,3800,PGI,,
93600,withdraw,fee,m1,merchant,food,fees,system,,200,PGI,,
";

    fn read_all(text: &str) -> Result<(Vec<Event>, Dictionary), ReadError> {
        let mut reader = EventReader::new(text.as_bytes())?;
        let mut events = Vec::new();
        while let Some(event) = reader.next_event()? {
            events.push(event);
        }
        Ok((events, reader.into_dictionary()))
    }

    fn write_all(events: &[Event], dictionary: &Dictionary, format: Format) -> String {
        let mut writer = EventWriter::new(Vec::new(), format).unwrap();
        for event in events {
            writer.write(event, dictionary).unwrap();
        }
        String::from_utf8(writer.finish().unwrap()).unwrap()
    }

    #[test]
    fn csv_sample_is_read_with_interned_pseudonyms() {
        let (events, dictionary) = read_all(SAMPLE).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].kind(), EventKind::Deposit);
        assert_eq!(events[1].reason, Reason::Payment);
        assert_eq!(events[1].source, events[0].target);
        assert_eq!(events[2].source, events[3].source);
        assert_eq!(
            dictionary.participant_info(events[1].target).kind,
            ParticipantKind::Merchant
        );
        assert_eq!(
            dictionary.label_text(dictionary.participant_info(events[1].target).category),
            "food"
        );
        assert_eq!(dictionary.label_text(events[0].programme), "mi");
        assert_eq!(dictionary.unit_code(events[3].unit), "PGI");
    }

    #[test]
    fn csv_and_json_lines_round_trip_byte_for_byte() {
        let (events, dictionary) = read_all(SAMPLE).unwrap();
        let csv = write_all(&events, &dictionary, Format::Csv);
        assert_eq!(csv, SAMPLE.replace("\n\n", "\n"));
        let json = write_all(&events, &dictionary, Format::JsonLines);
        assert!(json.starts_with("{\"schema\":\"coledger-events\",\"version\":1}\n"));
        let (again, dictionary_again) = read_all(&json).unwrap();
        assert_eq!(again, events);
        assert_eq!(write_all(&again, &dictionary_again, Format::Csv), csv);
    }

    fn row_error(row: &str) -> (u64, FieldError) {
        let text = format!(
            "{CSV_MAGIC}\n{CSV_HEADER}\n86400,deposit,issuance,city,issuer,,h1,household,,100,PGI,,\n{row}\n"
        );
        match read_all(&text) {
            Err(ReadError::Row { line, error }) => (line, error),
            other => panic!("expected a row error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_rows_are_reported_with_their_line() {
        let cases = [
            (
                "x,deposit,issuance,city,issuer,,h1,household,,100,PGI,,",
                "time is not an integer",
            ),
            (
                "1,deposit,issuance,city,issuer,,h1,household,,100,PGI",
                "expected 13 columns, found 11",
            ),
            (
                "86400,gift,issuance,city,issuer,,h1,household,,100,PGI,,",
                "unknown kind",
            ),
            (
                "86400,deposit,payment,city,issuer,,h1,household,,100,PGI,,",
                "reason payment is not a deposit",
            ),
            (
                "86400,deposit,issuance,h2,household,,h1,household,,100,PGI,,",
                "deposit's source",
            ),
            (
                "86400,transfer,payment,h1,household,,x,system,,100,PGI,,",
                "between holders",
            ),
            (
                "86400,transfer,payment,h1,household,,h1,household,,100,PGI,,",
                "same participant",
            ),
            (
                "86400,transfer,payment,h1,household,,m1,merchant,,0,PGI,,",
                "amount_minor must be",
            ),
            (
                "86400,transfer,payment,h1,merchant,,m1,merchant,,5,PGI,,",
                "was a household, now a merchant",
            ),
            (
                "86400,transfer,payment,h1,household,,m 1,merchant,,5,PGI,,",
                "not allowed in a label",
            ),
            (
                "86399,transfer,payment,h1,household,,m1,merchant,,5,PGI,,",
                "before the previous",
            ),
        ];
        for (row, expected) in cases {
            let (line, error) = row_error(row);
            assert_eq!(line, 4, "{row}");
            assert!(error.to_string().contains(expected), "{row}: {error}");
        }
    }

    #[test]
    fn wrong_headers_are_refused() {
        for text in [
            "",
            "time,kind\n",
            "# coledger-events v2\n",
            "# coledger-events v1\ntime,kind\n",
            "{\"schema\":\"coledger-events\",\"version\":2}\n",
        ] {
            assert!(
                matches!(
                    EventReader::new(text.as_bytes()),
                    Err(ReadError::Header { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_refused() {
        let text = format!(
            "{CSV_MAGIC}\n{CSV_HEADER}\n{}\n",
            "1".repeat(MAX_LINE_BYTES + 10)
        );
        let mut reader = EventReader::new(text.as_bytes()).unwrap();
        assert!(matches!(
            reader.next_event(),
            Err(ReadError::LineTooLong { line: 3 })
        ));
    }

    #[test]
    fn json_strings_with_escapes_are_read() {
        let text = "{\"schema\":\"coledger-events\",\"version\":1}\n{\"time\":1,\"kind\":\"deposit\",\"reason\":\"issuance\",\"source\":\"c\",\"source_kind\":\"issuer\",\"target\":\"\\u0068\",\"target_kind\":\"household\",\"amount_minor\":5,\"unit\":\"U\"}\n";
        let (events, dictionary) = read_all(text).unwrap();
        assert_eq!(&*dictionary.participant_info(events[0].target).name, "h");
    }

    #[test]
    fn bad_json_rows_are_reported_with_their_line() {
        let text = "{\"schema\":\"coledger-events\",\"version\":1}\n{\"time\":1}\n";
        let mut reader = EventReader::new(text.as_bytes()).unwrap();
        let error = reader.next_event().unwrap_err();
        assert!(error.to_string().starts_with("line 2: bad JSON"), "{error}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Arbitrary bytes after either header never panic the reader: every line is an event
        /// or an error with its line number.
        #[test]
        fn arbitrary_input_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000), json in proptest::prelude::any::<bool>()) {
            let header = if json {
                "{\"schema\":\"coledger-events\",\"version\":1}\n".to_owned()
            } else {
                format!("{CSV_MAGIC}\n{CSV_HEADER}\n")
            };
            let mut input = header.into_bytes();
            input.extend_from_slice(&body);
            let mut reader = EventReader::new(input.as_slice()).unwrap();
            let mut events = 0;
            loop {
                match reader.next_event() {
                    Ok(Some(_)) => events += 1,
                    Ok(None) => break,
                    Err(error) => {
                        proptest::prop_assert!(error.to_string().starts_with("line "));
                        break;
                    }
                }
                proptest::prop_assert!(events <= body.len());
            }
        }

        /// Rows built from valid parts survive a CSV and a JSON-lines round trip unchanged.
        #[test]
        fn valid_rows_round_trip(rows in proptest::collection::vec((0i64..1_000_000, 1i64..1_000_000_000, 0usize..4, 0usize..4), 1..40)) {
            let mut dictionary = Dictionary::new();
            let issuer = dictionary.participant("city", ParticipantKind::Issuer, "").unwrap();
            let unit = dictionary.unit("U").unwrap();
            let people: Vec<u32> = (0..4)
                .map(|i| dictionary.participant(&format!("p{i}"), ParticipantKind::Household, "x").unwrap())
                .collect();
            let mut time_s = 0;
            let events: Vec<Event> = rows
                .iter()
                .map(|&(step, amount, from, to)| {
                    time_s += step;
                    let transfer = from != to;
                    Event {
                        time_s,
                        reason: if transfer { Reason::Payment } else { Reason::Issuance },
                        source: if transfer { people[from] } else { issuer },
                        target: people[to],
                        amount_minor: amount,
                        unit,
                        programme: 0,
                        area: 0,
                    }
                })
                .collect();
            for format in [Format::Csv, Format::JsonLines] {
                let text = write_all(&events, &dictionary, format);
                let (again, read_dictionary) = read_all(&text).unwrap();
                proptest::prop_assert_eq!(write_all(&again, &read_dictionary, format), text);
                proptest::prop_assert_eq!(again.len(), events.len());
            }
        }
    }
}
