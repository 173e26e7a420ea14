//! Beneficiary enrolment: a municipality's CSV of households, validated row by row.
//!
//! The file usually comes out of Excel, so it may start with a UTF-8 byte-order mark, end
//! lines with CRLF and separate fields with `;` instead of `,`; the delimiter is whichever of
//! the two the header line holds more of. Every row is checked in full: a rejected row lists
//! all of its problems, so the operator fixes the file once. Only problems with the file as a
//! whole are an [`EnrolmentError`]; everything else is a [`Rejection`] in the
//! [`EnrolmentReport`], next to the accepted [`Household`]s.
//!
//! Columns, named in the header (case-insensitive, trimmed; spaces and dashes in a name count
//! as underscores, so `Household Ref` is `household_ref`): required `household_ref`, `name`,
//! `dependents`, `area`; optional `phone`, `language`; in any order. A column whose name is
//! none of these is refused rather than ignored, so a typo such as `dependants` is caught (the
//! error then lists it as unknown and `dependents` as missing). Columns with an empty name
//! (Excel's trailing `;;`) are ignored, as long as the rows leave them empty.
//!
//! Line numbers are the 1-based lines a text editor shows: the header is line 1 (unless blank
//! lines precede it), a row's line is the one it starts on, blank lines count. Rows that are
//! blank or hold only delimiters are skipped. A row may leave out trailing optional columns
//! altogether; a row with more fields than the header (usually an unquoted delimiter inside a
//! name), or too few to reach every required column, is rejected with
//! [`RowProblem::WrongFieldCount`] alone, since its other fields would be read against the
//! wrong columns.
//!
//! Rules per field: `household_ref` 1 to 64 of `A-Z a-z 0-9 . _ / -`, unique in the file
//! ignoring ASCII case (the second and later rows are rejected, naming the first line); `name`
//! trimmed with inner whitespace collapsed, at most 200 characters, no control characters;
//! `dependents` a whole number from 0 to [`EnrolmentRules::max_dependents`]; `area` one of
//! [`EnrolmentRules::areas`] (any case, stored as the rules spell it); `phone` optional, `+`
//! (or `00`) and 8 to 15 digits once spaces, dashes, dots and brackets are removed, stored as
//! `+` and digits; `language` optional, one of [`EnrolmentRules::languages`] (any case, stored
//! as the rules spell it), empty meaning [`EnrolmentRules::default_language`].
//!
//! Cost: 100,000 synthetic rows ([`synthetic_enrolment_csv`], 6.9 MB) parse and validate in
//! about 0.15 s on one core of the 2-core development machine built at opt-level 2 (0.85 s in
//! an unoptimised test build); measured 2026-11-22, best of 5, the machine busy with builds.
//! Reading the CSV, checking UTF-8 and allocating the output strings are most of it.

use std::collections::hash_map::Entry;
use std::fmt;

use foldhash::HashMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest file accepted: 64 MiB, about 600,000 typical rows, far above any pilot.
pub const MAX_ENROLMENT_BYTES: usize = 64 * 1024 * 1024;
/// Most data rows in one file; split bigger enrolments into several files.
pub const MAX_ENROLMENT_ROWS: usize = 200_000;
/// Longest name, in characters, after whitespace is collapsed.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest household reference, in characters.
pub const MAX_HOUSEHOLD_REF_CHARS: usize = 64;
/// Fewest digits in a phone number after the `+`.
pub const MIN_PHONE_DIGITS: usize = 8;
/// Most digits in a phone number after the `+` (E.164).
pub const MAX_PHONE_DIGITS: usize = 15;
/// Longest piece of a bad value quoted back in a problem; longer ones end in `…`.
pub const MAX_QUOTED_CHARS: usize = 40;

const REQUIRED_COLUMNS: [&str; 4] = ["household_ref", "name", "dependents", "area"];
const OPTIONAL_COLUMNS: [&str; 2] = ["phone", "language"];

/// What a programme accepts; comes from the programme's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentRules {
    /// Known areas (districts, neighbourhoods), matched ignoring case, stored as spelt here.
    pub areas: Vec<String>,
    /// Languages a household may be served in (such as `es`, `el`, `ar`, `en`), matched
    /// ignoring case, stored as spelt here.
    pub languages: Vec<String>,
    /// The language of a household whose row leaves `language` empty or has no such column.
    pub default_language: String,
    /// Most dependents one household may declare.
    pub max_dependents: u32,
}

/// An accepted row, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Household {
    /// The file line the row starts on.
    pub line: usize,
    /// The municipality's reference for the household, as written.
    pub household_ref: String,
    /// The name, trimmed, inner whitespace collapsed to single spaces.
    pub name: String,
    /// Declared dependents.
    pub dependents: u32,
    /// The area as the rules spell it.
    pub area: String,
    /// `+` and digits, if the row has a phone.
    pub phone: Option<String>,
    /// The language as the rules spell it, or the default.
    pub language: String,
}

/// A refused row with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The file line the row starts on.
    pub line: usize,
    /// The row's `household_ref` as written (shortened if very long), if not empty, so the
    /// operator can find the row.
    pub household_ref: Option<String>,
    /// Every problem, never empty: `household_ref`, `name`, `dependents`, `area`, `phone`,
    /// `language` in that order, then unnamed columns and duplicates.
    pub reasons: Vec<RowProblem>,
}

/// One thing wrong with one row. `Display` is a sentence for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// A required field is empty.
    #[error("{0} is empty")]
    MissingField(&'static str),
    /// A field holding a whole number holds something else.
    #[error("{field} must be a whole number, but is \"{value}\"")]
    BadNumber {
        /// The column.
        field: &'static str,
        /// The value, shortened.
        value: String,
    },
    /// A whole number above the programme's maximum.
    #[error("{field} is {value}, more than the most allowed, {max}")]
    OutOfRange {
        /// The column.
        field: &'static str,
        /// The value, shortened.
        value: String,
        /// The maximum.
        max: u32,
    },
    /// An area the programme does not know.
    #[error("area \"{0}\" is not one of the programme's areas")]
    UnknownArea(String),
    /// A language the programme does not offer.
    #[error("language \"{0}\" is not one the programme offers")]
    UnknownLanguage(String),
    /// A phone number that is not `+` and 8 to 15 digits.
    #[error("phone \"{0}\" is not an international number such as +34 612 345 678")]
    BadPhone(String),
    /// A household reference with characters outside `A-Z a-z 0-9 . _ / -`.
    #[error(
        "household_ref \"{0}\" may hold only letters A to Z, digits and the characters . _ / -"
    )]
    BadHouseholdRef(String),
    /// A field longer than its maximum.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// The column.
        field: &'static str,
        /// The maximum, in characters.
        max: usize,
    },
    /// A field holding control characters (not spaces, tabs or line breaks).
    #[error("{field} contains control characters")]
    ControlCharacters {
        /// The column.
        field: &'static str,
    },
    /// The same `household_ref` (ignoring case) appeared on an earlier line.
    #[error("household_ref already appears on line {first_line}")]
    DuplicateInFile {
        /// The line of its first appearance.
        first_line: usize,
    },
    /// More fields than the header, or too few to reach a required column.
    #[error(
        "the row has {found} fields but the header has {expected}; look for a stray delimiter or a missing quote"
    )]
    WrongFieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A value under a column whose header is empty.
    #[error("column {column} has no name in the header but holds a value in this row")]
    ValueInUnnamedColumn {
        /// The 1-based column.
        column: usize,
    },
}

/// The outcome for a whole file: rows in file order, split by verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrolmentReport {
    /// Rows that passed every check.
    pub accepted: Vec<Household>,
    /// Rows with at least one problem.
    pub rejected: Vec<Rejection>,
}

/// A problem with the file as a whole; no row is enrolled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentError {
    /// No bytes, or only whitespace (a byte-order mark aside).
    #[error("the file is empty")]
    Empty,
    /// Larger than [`MAX_ENROLMENT_BYTES`].
    #[error("the file is larger than {max_bytes} bytes; split it into several files")]
    TooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// Not UTF-8 from the given line on.
    #[error(
        "line {line} is not UTF-8 text; in Excel, save the file as \"CSV UTF-8 (comma delimited)\""
    )]
    NotUtf8 {
        /// The first line with bytes that are not UTF-8.
        line: usize,
    },
    /// The first line has no column names at all.
    #[error(
        "line {line} should be the header naming the columns household_ref, name, dependents, area (and optionally phone, language), but it is empty"
    )]
    NoHeader {
        /// The header's line.
        line: usize,
    },
    /// Required columns missing, or unknown or repeated column names.
    #[error("{}", describe_bad_header(*.line, .missing, .unknown, .duplicated))]
    BadHeader {
        /// The header's line.
        line: usize,
        /// Required columns the header lacks.
        missing: Vec<&'static str>,
        /// Column names that are not part of the format, as written.
        unknown: Vec<String>,
        /// Column names given more than once, normalised.
        duplicated: Vec<String>,
    },
    /// More than [`MAX_ENROLMENT_ROWS`] data rows.
    #[error("the file has more than {max} rows; split it into several files")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// The CSV reader failed; not expected once the file is known to be UTF-8.
    #[error("line {line} cannot be read as CSV: {message}")]
    Csv {
        /// The line where reading stopped.
        line: usize,
        /// The reader's message.
        message: String,
    },
}

fn describe_bad_header(
    line: usize,
    missing: &[&'static str],
    unknown: &[String],
    duplicated: &[String],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("lacks the required columns {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        parts.push(format!("has unknown columns {}", unknown.join(", ")));
    }
    if !duplicated.is_empty() {
        parts.push(format!("repeats the columns {}", duplicated.join(", ")));
    }
    format!(
        "the header on line {line} {}; the columns are household_ref, name, dependents, area, and optionally phone, language",
        parts.join(" and ")
    )
}

/// Parses and validates an enrolment file. `Err` only for problems with the whole file (see
/// [`EnrolmentError`]); row problems are [`Rejection`]s in the report.
pub fn parse_enrolment(
    csv: &[u8],
    rules: &EnrolmentRules,
) -> Result<EnrolmentReport, EnrolmentError> {
    parse_with_row_limit(csv, rules, MAX_ENROLMENT_ROWS)
}

fn parse_with_row_limit(
    csv: &[u8],
    rules: &EnrolmentRules,
    max_rows: usize,
) -> Result<EnrolmentReport, EnrolmentError> {
    if csv.len() > MAX_ENROLMENT_BYTES {
        return Err(EnrolmentError::TooLarge {
            max_bytes: MAX_ENROLMENT_BYTES,
        });
    }
    let text = csv.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(csv);
    if let Err(error) = std::str::from_utf8(text) {
        let line = 1 + count_newlines(&text[..error.valid_up_to()]);
        return Err(EnrolmentError::NotUtf8 { line });
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(EnrolmentError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(detect_delimiter(text))
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut lines = LineCounter::new(text);
    let mut record = csv::StringRecord::new();
    if !read_record(&mut reader, &mut record, &mut lines)? {
        return Err(EnrolmentError::Empty);
    }
    let columns = Columns::from_header(&record, lines.line_of(&record))?;
    let lookup = Lookup::new(rules);
    let mut seen: HashMap<String, usize> = HashMap::default();
    let mut report = EnrolmentReport::default();
    let mut rows = 0usize;
    while read_record(&mut reader, &mut record, &mut lines)? {
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        rows += 1;
        if rows > max_rows {
            return Err(EnrolmentError::TooManyRows { max: max_rows });
        }
        let line = lines.line_of(&record);
        match check_row(&record, line, &columns, &lookup, &mut seen) {
            Ok(household) => report.accepted.push(household),
            Err(rejection) => report.rejected.push(rejection),
        }
    }
    Ok(report)
}

fn read_record(
    reader: &mut csv::Reader<&[u8]>,
    record: &mut csv::StringRecord,
    lines: &mut LineCounter<'_>,
) -> Result<bool, EnrolmentError> {
    reader.read_record(record).map_err(|error| {
        let byte = error.position().map_or(0, csv::Position::byte);
        EnrolmentError::Csv {
            line: lines.line_at(usize::try_from(byte).unwrap_or(usize::MAX)),
            message: error.to_string(),
        }
    })
}

/// `;` if the first non-blank line holds more semicolons than commas, else `,`.
fn detect_delimiter(text: &[u8]) -> u8 {
    let first_line = text
        .split(|&byte| byte == b'\n' || byte == b'\r')
        .find(|line| !line.iter().all(u8::is_ascii_whitespace))
        .unwrap_or_default();
    let count = |wanted: u8| first_line.iter().filter(|&&byte| byte == wanted).count();
    if count(b';') > count(b',') {
        b';'
    } else {
        b','
    }
}

/// Line breaks as an editor counts them: `\n`, `\r\n`, and a `\r` alone (old Mac files),
/// which the CSV reader also takes as a line end.
fn count_newlines(bytes: &[u8]) -> usize {
    let lone_returns = bytes
        .windows(2)
        .filter(|pair| pair[0] == b'\r' && pair[1] != b'\n')
        .count();
    let last_is_return = usize::from(bytes.last() == Some(&b'\r'));
    bytes.iter().filter(|&&byte| byte == b'\n').count() + lone_returns + last_is_return
}

/// Turns a record's starting byte into the line a text editor shows. The reader's start
/// position is where the previous record ended, so the line breaks and blank lines it skips
/// are stepped over first. Positions only move forward, so counting is linear in the file.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, record: &csv::StringRecord) -> usize {
        let byte = record
            .position()
            .map_or(self.offset as u64, csv::Position::byte);
        self.line_at(usize::try_from(byte).unwrap_or(usize::MAX))
    }

    fn line_at(&mut self, byte: usize) -> usize {
        let mut start = byte.min(self.text.len()).max(self.offset);
        while let Some(b'\r' | b'\n') = self.text.get(start) {
            start += 1;
        }
        self.line += count_newlines(&self.text[self.offset..start]);
        self.offset = start;
        self.line
    }
}

/// Where each known column is in the file.
struct Columns {
    household_ref: usize,
    name: usize,
    dependents: usize,
    area: usize,
    phone: Option<usize>,
    language: Option<usize>,
    unnamed: Vec<usize>,
    width: usize,
    /// A row needs at least this many fields to reach every required column.
    required_width: usize,
}

impl Columns {
    fn from_header(header: &csv::StringRecord, line: usize) -> Result<Self, EnrolmentError> {
        let names: Vec<String> = header.iter().map(normalise_column_name).collect();
        if names.iter().all(String::is_empty) {
            return Err(EnrolmentError::NoHeader { line });
        }
        let position = |wanted: &str| names.iter().position(|name| name == wanted);
        let missing: Vec<&'static str> = REQUIRED_COLUMNS
            .into_iter()
            .filter(|&wanted| position(wanted).is_none())
            .collect();
        let mut unknown = Vec::new();
        let mut duplicated = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let known = REQUIRED_COLUMNS.contains(&name.as_str())
                || OPTIONAL_COLUMNS.contains(&name.as_str());
            if !name.is_empty() && !known {
                unknown.push(header.get(index).unwrap_or_default().trim().to_owned());
            } else if known && position(name) != Some(index) && !duplicated.contains(name) {
                duplicated.push(name.clone());
            }
        }
        let required: Vec<usize> = REQUIRED_COLUMNS
            .iter()
            .filter_map(|c| position(c))
            .collect();
        match required[..] {
            [household_ref, name, dependents, area]
                if unknown.is_empty() && duplicated.is_empty() =>
            {
                Ok(Self {
                    household_ref,
                    name,
                    dependents,
                    area,
                    phone: position("phone"),
                    language: position("language"),
                    unnamed: (0..names.len()).filter(|&i| names[i].is_empty()).collect(),
                    width: names.len(),
                    required_width: 1 + household_ref.max(name).max(dependents).max(area),
                })
            }
            _ => Err(EnrolmentError::BadHeader {
                line,
                missing,
                unknown,
                duplicated,
            }),
        }
    }
}

fn normalise_column_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// The rules' areas and languages keyed by their lower-case form, and, so that most rows
/// find theirs without allocating, also as spelt and in upper case.
struct Lookup<'a> {
    areas: HashMap<String, &'a str>,
    languages: HashMap<String, &'a str>,
    default_language: &'a str,
    max_dependents: u32,
}

impl<'a> Lookup<'a> {
    fn new(rules: &'a EnrolmentRules) -> Self {
        Self {
            areas: index_ignoring_case(&rules.areas),
            languages: index_ignoring_case(&rules.languages),
            default_language: &rules.default_language,
            max_dependents: rules.max_dependents,
        }
    }
}

/// Lower-cased, whitespace-collapsed value (and the value as spelt, and upper-cased) to the
/// value as spelt; the first value wins a key.
fn index_ignoring_case(values: &[String]) -> HashMap<String, &str> {
    let mut map: HashMap<String, &str> = HashMap::default();
    for value in values {
        let folded = collapse_whitespace(value).to_lowercase();
        for key in [value.trim().to_owned(), folded.to_uppercase(), folded] {
            map.entry(key).or_insert(value.as_str());
        }
    }
    map
}

/// Checks one row in full; a rejection carries every problem found.
fn check_row(
    record: &csv::StringRecord,
    line: usize,
    columns: &Columns,
    lookup: &Lookup<'_>,
    seen: &mut HashMap<String, usize>,
) -> Result<Household, Rejection> {
    let field = |index: usize| record.get(index).unwrap_or_default().trim();
    let written_ref = field(columns.household_ref);
    let shown_ref =
        || (!written_ref.is_empty()).then(|| shorten(written_ref, MAX_HOUSEHOLD_REF_CHARS));
    let found = record.len();
    // Even empty extra cells are refused: they are the sign of an unquoted delimiter inside a
    // value, after which every later field would be checked against the wrong column.
    if found > columns.width || found < columns.required_width {
        return Err(Rejection {
            line,
            household_ref: shown_ref(),
            reasons: vec![RowProblem::WrongFieldCount {
                expected: columns.width,
                found,
            }],
        });
    }
    let mut problems = Vec::new();
    let household_ref = check_household_ref(written_ref, &mut problems);
    let name = check_name(field(columns.name), &mut problems);
    let dependents = check_dependents(field(columns.dependents), lookup, &mut problems);
    let area = check_choice(field(columns.area), &lookup.areas, &mut problems, "area");
    let phone = check_phone(columns.phone.map_or("", field), &mut problems);
    let language = match columns.language.map_or("", field) {
        "" => Some(lookup.default_language),
        written => check_choice(written, &lookup.languages, &mut problems, "language"),
    };
    for &column in &columns.unnamed {
        if !field(column).is_empty() {
            problems.push(RowProblem::ValueInUnnamedColumn { column: column + 1 });
        }
    }
    if let Some(household_ref) = &household_ref {
        match seen.entry(household_ref.to_ascii_lowercase()) {
            Entry::Occupied(first) => problems.push(RowProblem::DuplicateInFile {
                first_line: *first.get(),
            }),
            Entry::Vacant(slot) => {
                slot.insert(line);
            }
        }
    }
    match (household_ref, name, dependents, area, phone, language) {
        (
            Some(household_ref),
            Some(name),
            Some(dependents),
            Some(area),
            Some(phone),
            Some(language),
        ) if problems.is_empty() => Ok(Household {
            line,
            household_ref,
            name,
            dependents,
            area: area.to_owned(),
            phone,
            language: language.to_owned(),
        }),
        _ => Err(Rejection {
            line,
            household_ref: shown_ref(),
            reasons: problems,
        }),
    }
}

fn check_household_ref(written: &str, problems: &mut Vec<RowProblem>) -> Option<String> {
    if written.is_empty() {
        problems.push(RowProblem::MissingField("household_ref"));
        return None;
    }
    // Allowed characters are ASCII, so for a valid reference bytes are characters.
    if written.len() > MAX_HOUSEHOLD_REF_CHARS && written.chars().count() > MAX_HOUSEHOLD_REF_CHARS
    {
        problems.push(RowProblem::TooLong {
            field: "household_ref",
            max: MAX_HOUSEHOLD_REF_CHARS,
        });
        return None;
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    if !written.chars().all(allowed) {
        problems.push(RowProblem::BadHouseholdRef(shorten(
            written,
            MAX_QUOTED_CHARS,
        )));
        return None;
    }
    Some(written.to_owned())
}

fn check_name(written: &str, problems: &mut Vec<RowProblem>) -> Option<String> {
    if written.is_empty() {
        problems.push(RowProblem::MissingField("name"));
        return None;
    }
    let name = collapse_whitespace(written);
    let mut ok = true;
    if name.chars().any(char::is_control) {
        problems.push(RowProblem::ControlCharacters { field: "name" });
        ok = false;
    }
    // A character is at least one byte: most names need no counting.
    if name.len() > MAX_NAME_CHARS && name.chars().count() > MAX_NAME_CHARS {
        problems.push(RowProblem::TooLong {
            field: "name",
            max: MAX_NAME_CHARS,
        });
        ok = false;
    }
    ok.then_some(name)
}

fn check_dependents(
    written: &str,
    lookup: &Lookup<'_>,
    problems: &mut Vec<RowProblem>,
) -> Option<u32> {
    const FIELD: &str = "dependents";
    if written.is_empty() {
        problems.push(RowProblem::MissingField(FIELD));
        return None;
    }
    if !written.bytes().all(|byte| byte.is_ascii_digit()) {
        problems.push(RowProblem::BadNumber {
            field: FIELD,
            value: shorten(written, MAX_QUOTED_CHARS),
        });
        return None;
    }
    // All digits: a parse failure can only be an overflow, which is out of range too.
    match written.parse::<u32>() {
        Ok(value) if value <= lookup.max_dependents => Some(value),
        _ => {
            problems.push(RowProblem::OutOfRange {
                field: FIELD,
                value: shorten(written, MAX_QUOTED_CHARS),
                max: lookup.max_dependents,
            });
            None
        }
    }
}

/// Looks `written` up among the rules' values, ignoring case and extra whitespace.
fn check_choice<'a>(
    written: &str,
    choices: &HashMap<String, &'a str>,
    problems: &mut Vec<RowProblem>,
    field: &'static str,
) -> Option<&'a str> {
    if written.is_empty() {
        problems.push(RowProblem::MissingField(field));
        return None;
    }
    let found = match choices.get(written) {
        Some(&value) => Some(value),
        None => choices
            .get(&collapse_whitespace(written).to_lowercase())
            .copied(),
    };
    if found.is_none() {
        let shown = shorten(written, MAX_QUOTED_CHARS);
        problems.push(match field {
            "area" => RowProblem::UnknownArea(shown),
            _ => RowProblem::UnknownLanguage(shown),
        });
    }
    found
}

/// `Some(None)` for no phone, `Some(Some(+digits))` for a good one, `None` after a problem.
fn check_phone(written: &str, problems: &mut Vec<RowProblem>) -> Option<Option<String>> {
    if written.is_empty() {
        return Some(None);
    }
    let compact: String = written
        .chars()
        .filter(|&c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))
        .unwrap_or_default();
    let digit_count_ok = (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len());
    if digit_count_ok && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        let mut phone = String::with_capacity(1 + digits.len());
        phone.push('+');
        phone.push_str(digits);
        return Some(Some(phone));
    }
    problems.push(RowProblem::BadPhone(shorten(written, MAX_QUOTED_CHARS)));
    None
}

/// Trims and turns every run of whitespace into one space.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// At most `max` characters of `text`, ending in `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// The rejected rows as CSV for the operator: `line,household_ref,reasons` with the reasons
/// joined by `; `. It starts with a UTF-8 byte-order mark and uses CRLF so Excel shows Greek
/// and Arabic text correctly, and a cell that Excel would run as a formula (starting with
/// `=`, `+`, `-`, `@`, tab or CR) is prefixed with `'`.
pub fn rejection_report_csv(report: &EnrolmentReport) -> String {
    let mut out = String::from("\u{FEFF}line,household_ref,reasons\r\n");
    for rejection in &report.rejected {
        let reasons: Vec<String> = rejection.reasons.iter().map(ToString::to_string).collect();
        out.push_str(&rejection.line.to_string());
        out.push(',');
        push_csv_cell(
            &mut out,
            rejection.household_ref.as_deref().unwrap_or_default(),
        );
        out.push(',');
        push_csv_cell(&mut out, &reasons.join("; "));
        out.push_str("\r\n");
    }
    out
}

fn push_csv_cell(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\n', '\r', ';']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// Names for [`synthetic_enrolment_csv`]: given names and family names that belong together.
const SYNTHETIC_NAMES: [(&[&str], &[&str]); 4] = [
    (
        &[
            "María José",
            "José Luis",
            "Ana Belén",
            "Íñigo",
            "Nuria",
            "Joaquín",
        ],
        &[
            "García López",
            "Martínez Ruiz",
            "Fernández",
            "Muñoz Peña",
            "Ibáñez",
        ],
    ),
    (
        &["Γιώργος", "Ελένη", "Δημήτρης", "Μαρία", "Αικατερίνη"],
        &["Παπαδόπουλος", "Κωνσταντίνου", "Οικονόμου", "Γεωργίου"],
    ),
    (
        &["محمد", "فاطمة", "عمر", "ليلى", "يوسف"],
        &["الحسن", "عبد الله", "بن يوسف", "الخطيب"],
    ),
    (
        &["Anna", "Mehmet", "Olena", "Kwame", "Siobhán"],
        &["Novak", "Yılmaz", "Kowalska", "Mensah", "O'Brien"],
    ),
];

/// A deterministic enrolment file of `n` rows for benchmarks and tests: UTF-8 BOM, CRLF,
/// comma-delimited, names in Spanish, Greek, Arabic and other scripts (some written
/// "Family, Given" and so quoted, some with stray spaces), phones in two out of three rows
/// written with spaces, languages from `rules` in mixed case or left empty. Every row is
/// valid under `rules` when it has at least one area.
pub fn synthetic_enrolment_csv(n: usize, seed: u64, rules: &EnrolmentRules) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::with_capacity(80 * n + 64);
    out.push_str("\u{FEFF}household_ref,name,dependents,area,phone,language\r\n");
    let fallback_area = ["Centre".to_owned()];
    let areas = if rules.areas.is_empty() {
        &fallback_area[..]
    } else {
        &rules.areas[..]
    };
    for row in 0..n {
        let (given_names, family_names) = SYNTHETIC_NAMES[rng.gen_range(0..SYNTHETIC_NAMES.len())];
        let given = given_names[rng.gen_range(0..given_names.len())];
        let family = family_names[rng.gen_range(0..family_names.len())];
        let name = match rng.gen_range(0..10) {
            0 => format!("\"{family}, {given}\""),
            1 => format!(" {given}  {family} "),
            _ => format!("{given} {family}"),
        };
        let dependents = rng.gen_range(0..=rules.max_dependents.min(6));
        let area = &areas[rng.gen_range(0..areas.len())];
        let area = if rng.gen_bool(0.2) {
            area.to_uppercase()
        } else {
            area.clone()
        };
        let phone = if rng.gen_range(0..3) < 2 {
            let number: u32 = rng.gen_range(0..100_000_000);
            let digits = format!("{number:08}");
            format!("+34 6{} {} {}", &digits[..2], &digits[2..5], &digits[5..])
        } else {
            String::new()
        };
        let language = match rules.languages.len() {
            0 => String::new(),
            count if rng.gen_bool(0.5) => rules.languages[rng.gen_range(0..count)].to_uppercase(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "HH-{seed}-{row:07},{name},{dependents},{area},{phone},{language}\r\n"
        ));
    }
    out.into_bytes()
}

impl fmt::Display for Rejection {
    /// `line 7 (HH-12): name is empty; area "Nowhere" is not one of the programme's areas`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(household_ref) = &self.household_ref {
            write!(f, " ({household_ref})")?;
        }
        f.write_str(":")?;
        for (index, reason) in self.reasons.iter().enumerate() {
            let separator = if index == 0 { " " } else { "; " };
            write!(f, "{separator}{reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules() -> EnrolmentRules {
        EnrolmentRules {
            areas: vec![
                "Centro".to_owned(),
                "San Blas".to_owned(),
                "Άγιος Δημήτριος".to_owned(),
            ],
            languages: vec!["es".to_owned(), "el".to_owned(), "ar".to_owned()],
            default_language: "es".to_owned(),
            max_dependents: 10,
        }
    }

    fn parse(text: &str) -> EnrolmentReport {
        parse_enrolment(text.as_bytes(), &rules()).unwrap()
    }

    fn parse_err(text: &str) -> EnrolmentError {
        parse_enrolment(text.as_bytes(), &rules()).unwrap_err()
    }

    /// The reasons of the only rejected row.
    fn reasons(text: &str) -> Vec<RowProblem> {
        let report = parse(text);
        assert_eq!(report.rejected.len(), 1, "{report:?}");
        report.rejected[0].reasons.clone()
    }

    const HEADER: &str = "household_ref,name,dependents,area,phone,language\n";

    fn row(fields: &str) -> String {
        format!("{HEADER}{fields}\n")
    }

    #[test]
    fn a_clean_comma_file_is_accepted_and_normalised() {
        let report = parse(&row("HH-1,  Ana   García ,2,centro,+34 612-345-678,ES"));
        assert!(report.rejected.is_empty(), "{report:?}");
        assert_eq!(
            report.accepted,
            vec![Household {
                line: 2,
                household_ref: "HH-1".to_owned(),
                name: "Ana García".to_owned(),
                dependents: 2,
                area: "Centro".to_owned(),
                phone: Some("+34612345678".to_owned()),
                language: "es".to_owned(),
            }]
        );
    }

    #[test]
    fn an_excel_semicolon_file_with_bom_and_crlf_is_read() {
        let text = "\u{FEFF}Household_Ref;Name;Dependents;Area\r\n\
                    HH-1;García, Ana;0;San Blas\r\n\
                    HH-2;Γιώργος Παπαδόπουλος;3;ΆΓΙΟΣ ΔΗΜΉΤΡΙΟΣ\r\n";
        let report = parse(text);
        assert!(report.rejected.is_empty(), "{report:?}");
        let lines: Vec<usize> = report.accepted.iter().map(|h| h.line).collect();
        assert_eq!(lines, vec![2, 3]);
        assert_eq!(report.accepted[0].name, "García, Ana");
        assert_eq!(report.accepted[1].area, "Άγιος Δημήτριος");
        assert_eq!(report.accepted[1].language, "es");
        assert_eq!(report.accepted[1].phone, None);
    }

    #[test]
    fn header_names_ignore_case_spaces_and_order() {
        let text = " AREA ;Language; Household Ref ;NAME;dependents;phone\nCentro;ar;hh/7;فاطمة الزهراء;1;\n";
        let report = parse(text);
        assert!(report.rejected.is_empty(), "{report:?}");
        let household = &report.accepted[0];
        assert_eq!(household.household_ref, "hh/7");
        assert_eq!(household.name, "فاطمة الزهراء");
        assert_eq!(household.language, "ar");
    }

    #[test]
    fn a_misspelt_column_is_reported_as_unknown_and_its_column_as_missing() {
        let error = parse_err("household_ref,name,dependants,area,Notes\nHH-1,A,1,Centro,x\n");
        assert_eq!(
            error,
            EnrolmentError::BadHeader {
                line: 1,
                missing: vec!["dependents"],
                unknown: vec!["dependants".to_owned(), "Notes".to_owned()],
                duplicated: vec![],
            }
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the header on line 1 lacks the required columns dependents and has unknown columns dependants, Notes;"
            ),
            "{message}"
        );
    }

    #[test]
    fn repeated_columns_are_refused() {
        let error = parse_err("household_ref,name,dependents,area,Name\n");
        assert_eq!(
            error,
            EnrolmentError::BadHeader {
                line: 1,
                missing: vec![],
                unknown: vec![],
                duplicated: vec!["name".to_owned()],
            }
        );
        assert!(error.to_string().contains("repeats the columns name"));
    }

    #[test]
    fn a_header_with_only_optional_columns_lacks_all_required_ones() {
        let error = parse_err("phone;language\n");
        assert!(matches!(
            error,
            EnrolmentError::BadHeader { ref missing, .. } if missing.len() == 4
        ));
    }

    #[test]
    fn empty_files_are_errors() {
        for text in ["", "\u{FEFF}", "  \r\n\r\n", "\n"] {
            assert_eq!(parse_err(text), EnrolmentError::Empty, "{text:?}");
        }
        assert_eq!(
            parse_err(";;;\nHH-1;A;1;Centro\n"),
            EnrolmentError::NoHeader { line: 1 }
        );
    }

    #[test]
    fn a_header_only_file_enrols_nobody() {
        assert_eq!(parse(HEADER), EnrolmentReport::default());
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_first_bad_line() {
        let mut bytes = row("HH-1,Ana,1,Centro,,").into_bytes();
        bytes.extend_from_slice(b"HH-2,Jos\xe9,1,Centro,,\n");
        let error = parse_enrolment(&bytes, &rules()).unwrap_err();
        assert_eq!(error, EnrolmentError::NotUtf8 { line: 3 });
        assert!(error.to_string().contains("CSV UTF-8"));
        // Excel's "Unicode text" is UTF-16.
        let utf16 = [0xFF, 0xFE, b'h', 0, b'h', 0];
        assert_eq!(
            parse_enrolment(&utf16, &rules()).unwrap_err(),
            EnrolmentError::NotUtf8 { line: 1 }
        );
    }

    #[test]
    fn line_numbers_are_editor_lines_across_blank_lines_and_quoted_line_breaks() {
        let text = "\r\nhousehold_ref;name;dependents;area\r\n\r\n\
                    HH-1;\"Ana\r\nGarcía\";1;Centro\r\n\
                    ;;;\r\n\
                    HH-2;;1;Centro\r\n\
                    \r\n\r\n\
                    HH-3;Omar;x;Centro";
        let report = parse(text);
        assert_eq!(report.accepted.len(), 1);
        assert_eq!(report.accepted[0].line, 4);
        assert_eq!(report.accepted[0].name, "Ana García");
        let lines: Vec<usize> = report.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![7, 10]);
        assert_eq!(
            parse_err("\n\nhousehold_ref,name\n"),
            EnrolmentError::BadHeader {
                line: 3,
                missing: vec!["dependents", "area"],
                unknown: vec![],
                duplicated: vec![],
            }
        );
    }

    #[test]
    fn old_mac_line_ends_count_as_lines() {
        let text = "household_ref,name,dependents,area\rHH-1,Ana,1,Centro\r\rHH-2,,1,Centro\r";
        let report = parse(text);
        assert_eq!(report.accepted[0].line, 2);
        assert_eq!(report.rejected[0].line, 4);
        let mut bytes = b"household_ref,name,dependents,area\rHH-1,Jos".to_vec();
        bytes.extend_from_slice(b"\xe9,1,Centro\r");
        assert_eq!(
            parse_enrolment(&bytes, &rules()).unwrap_err(),
            EnrolmentError::NotUtf8 { line: 2 }
        );
    }

    #[test]
    fn every_problem_of_a_row_is_reported() {
        let problems = reasons(&row("HH 1,,-2,Atlantis,12345,fr"));
        assert_eq!(
            problems,
            vec![
                RowProblem::BadHouseholdRef("HH 1".to_owned()),
                RowProblem::MissingField("name"),
                RowProblem::BadNumber {
                    field: "dependents",
                    value: "-2".to_owned()
                },
                RowProblem::UnknownArea("Atlantis".to_owned()),
                RowProblem::BadPhone("12345".to_owned()),
                RowProblem::UnknownLanguage("fr".to_owned()),
            ]
        );
        let report = parse(&row("HH 1,,-2,Atlantis,12345,fr"));
        assert_eq!(report.rejected[0].household_ref.as_deref(), Some("HH 1"));
        assert_eq!(report.rejected[0].line, 2);
    }

    #[test]
    fn required_fields_may_not_be_empty() {
        assert_eq!(
            reasons(&row(" , ,  ,  ,+34612345678,")),
            vec![
                RowProblem::MissingField("household_ref"),
                RowProblem::MissingField("name"),
                RowProblem::MissingField("dependents"),
                RowProblem::MissingField("area"),
            ]
        );
    }

    #[test]
    fn household_refs_are_short_and_plain() {
        let longest = "A".repeat(64);
        assert_eq!(
            parse(&row(&format!("{longest},Ana,1,Centro,,")))
                .accepted
                .len(),
            1
        );
        let too_long = "A".repeat(65);
        assert_eq!(
            reasons(&row(&format!("{too_long},Ana,1,Centro,,"))),
            vec![RowProblem::TooLong {
                field: "household_ref",
                max: 64
            }]
        );
        for good in ["a.b_c/d-9", "2024/0001", "X"] {
            assert_eq!(
                parse(&row(&format!("{good},Ana,1,Centro,,")))
                    .accepted
                    .len(),
                1
            );
        }
        for bad in ["HH#1", "Ñ-1", "a b", "=1+1"] {
            assert!(matches!(
                reasons(&row(&format!("{bad},Ana,1,Centro,,")))[..],
                [RowProblem::BadHouseholdRef(_)]
            ));
        }
    }

    #[test]
    fn names_are_collapsed_limited_and_free_of_control_characters() {
        let name = "é".repeat(200);
        let report = parse(&row(&format!("HH-1,{name},1,Centro,,")));
        assert_eq!(report.accepted[0].name.chars().count(), 200);
        let long = format!("{name}x");
        assert_eq!(
            reasons(&row(&format!("HH-1,{long},1,Centro,,"))),
            vec![RowProblem::TooLong {
                field: "name",
                max: 200
            }]
        );
        // 201 characters before collapsing, 200 after: accepted.
        let spaced = format!("{} {}", "a".repeat(100), "b".repeat(99));
        let spaced = spaced.replacen(' ', "   ", 1);
        assert_eq!(
            parse(&row(&format!("HH-1,{spaced},1,Centro,,")))
                .accepted
                .len(),
            1
        );
        assert_eq!(
            reasons(&row("HH-1,Ana\u{0}Ruiz,1,Centro,,")),
            vec![RowProblem::ControlCharacters { field: "name" }]
        );
        let report = parse(&row("HH-1,\"Ana\tMaría\n Ruiz\",1,Centro,,"));
        assert_eq!(report.accepted[0].name, "Ana María Ruiz");
    }

    #[test]
    fn dependents_are_whole_numbers_up_to_the_maximum() {
        for (written, expected) in [("0", 0), ("10", 10), (" 7 ", 7), ("007", 7)] {
            let report = parse(&row(&format!("HH-1,Ana,{written},Centro,,")));
            assert_eq!(report.accepted[0].dependents, expected, "{written}");
        }
        for written in ["-1", "2.0", "two", "+3", "1e2"] {
            assert_eq!(
                reasons(&row(&format!("HH-1,Ana,{written},Centro,,"))),
                vec![RowProblem::BadNumber {
                    field: "dependents",
                    value: written.to_owned()
                }],
                "{written}"
            );
        }
        for written in ["11", "4294967296", "99999999999999999999999"] {
            assert_eq!(
                reasons(&row(&format!("HH-1,Ana,{written},Centro,,"))),
                vec![RowProblem::OutOfRange {
                    field: "dependents",
                    value: written.to_owned(),
                    max: 10
                }],
                "{written}"
            );
        }
    }

    #[test]
    fn areas_and_languages_match_ignoring_case_and_are_stored_as_the_rules_spell_them() {
        let report = parse(&row("HH-1,Ana,1,  san   BLAS ,,EL"));
        assert_eq!(report.accepted[0].area, "San Blas");
        assert_eq!(report.accepted[0].language, "el");
        assert_eq!(
            reasons(&row("HH-1,Ana,1,Sanblas,,")),
            vec![RowProblem::UnknownArea("Sanblas".to_owned())]
        );
        assert_eq!(
            reasons(&row("HH-1,Ana,1,Centro,,english")),
            vec![RowProblem::UnknownLanguage("english".to_owned())]
        );
    }

    #[test]
    fn phones_are_optional_and_normalised_to_plus_and_digits() {
        for (written, expected) in [
            ("", None),
            ("+34 612 345 678", Some("+34612345678")),
            ("0034-612-345-678", Some("+34612345678")),
            ("+30 (210) 123.4567", Some("+302101234567")),
            ("+12345678", Some("+12345678")),
            ("+123456789012345", Some("+123456789012345")),
        ] {
            let report = parse(&row(&format!("HH-1,Ana,1,Centro,{written},")));
            assert_eq!(report.accepted[0].phone.as_deref(), expected, "{written:?}");
        }
        for written in [
            "612345678",
            "+1234567",
            "+1234567890123456",
            "+34 6l2 345 678",
            "3.46E+10",
            "+",
        ] {
            assert_eq!(
                reasons(&row(&format!("HH-1,Ana,1,Centro,{written},"))),
                vec![RowProblem::BadPhone(written.to_owned())],
                "{written}"
            );
        }
        let report = parse("household_ref,name,dependents,area\nHH-1,Ana,1,Centro\n");
        assert_eq!(report.accepted[0].phone, None);
        assert_eq!(report.accepted[0].language, "es");
    }

    #[test]
    fn later_duplicates_are_rejected_naming_the_first_line_ignoring_case() {
        let text = format!(
            "{HEADER}HH-1,Ana,1,Centro,,\nHH-2,Omar,1,Centro,,\nhh-1,Ana,1,Centro,,\nHH-1,Ana,9,Atlantis,,\n"
        );
        let report = parse(&text);
        assert_eq!(report.accepted.len(), 2);
        assert_eq!(report.rejected.len(), 2);
        assert_eq!(
            report.rejected[0].reasons,
            vec![RowProblem::DuplicateInFile { first_line: 2 }]
        );
        assert_eq!(
            report.rejected[1].reasons,
            vec![
                RowProblem::UnknownArea("Atlantis".to_owned()),
                RowProblem::DuplicateInFile { first_line: 2 }
            ]
        );
        // The first appearance counts even when that row is itself rejected.
        let report = parse(&format!("{HEADER}HH-1,,1,Centro,,\nHH-1,Ana,1,Centro,,\n"));
        assert_eq!(report.rejected.len(), 2);
        assert_eq!(
            report.rejected[1].reasons,
            vec![RowProblem::DuplicateInFile { first_line: 2 }]
        );
    }

    #[test]
    fn rows_with_the_wrong_number_of_fields_are_rejected_alone() {
        assert_eq!(
            reasons(&row("HH-1,García, Ana,1,Centro,,")),
            vec![RowProblem::WrongFieldCount {
                expected: 6,
                found: 7
            }]
        );
        assert_eq!(
            reasons(&row("HH-1,Ana,1")),
            vec![RowProblem::WrongFieldCount {
                expected: 6,
                found: 3
            }]
        );
        // Trailing optional fields may be left out altogether.
        let report = parse(&row("HH-1,Ana,1,Centro"));
        assert_eq!(report.accepted.len(), 1, "{report:?}");
        assert_eq!(
            reasons(&row("HH-1,Ana,1,Centro,,,,x")),
            vec![RowProblem::WrongFieldCount {
                expected: 6,
                found: 8
            }]
        );
    }

    #[test]
    fn delimiter_only_rows_are_skipped_and_unnamed_columns_must_stay_empty() {
        let text = "household_ref;name;dependents;area;;\r\n\
                    HH-1;Ana;1;Centro;;\r\n\
                    ;;;;;\r\n\
                    HH-2;Omar;1;Centro;;note\r\n";
        let report = parse(text);
        assert_eq!(report.accepted.len(), 1);
        assert_eq!(report.rejected[0].line, 4);
        assert_eq!(
            report.rejected[0].reasons,
            vec![RowProblem::ValueInUnnamedColumn { column: 6 }]
        );
    }

    #[test]
    fn long_bad_values_are_shortened_in_problems() {
        let area = "x".repeat(100);
        let problems = reasons(&row(&format!("HH-1,Ana,1,{area},,")));
        let expected = format!("{}…", "x".repeat(MAX_QUOTED_CHARS));
        assert_eq!(problems, vec![RowProblem::UnknownArea(expected)]);
        let reference = "#".repeat(100);
        let report = parse(&row(&format!("{reference},Ana,1,Centro,,")));
        let shown = report.rejected[0].household_ref.as_deref().unwrap();
        assert_eq!(shown.chars().count(), MAX_HOUSEHOLD_REF_CHARS + 1);
    }

    #[test]
    fn too_many_rows_is_a_file_error() {
        let csv = synthetic_enrolment_csv(11, 1, &rules());
        assert!(parse_with_row_limit(&csv, &rules(), 11).is_ok());
        assert_eq!(
            parse_with_row_limit(&csv, &rules(), 10).unwrap_err(),
            EnrolmentError::TooManyRows { max: 10 }
        );
    }

    #[test]
    fn row_problems_read_as_sentences() {
        let cases = [
            (RowProblem::MissingField("name"), "name is empty"),
            (
                RowProblem::BadNumber {
                    field: "dependents",
                    value: "two".to_owned(),
                },
                "dependents must be a whole number, but is \"two\"",
            ),
            (
                RowProblem::OutOfRange {
                    field: "dependents",
                    value: "12".to_owned(),
                    max: 10,
                },
                "dependents is 12, more than the most allowed, 10",
            ),
            (
                RowProblem::UnknownArea("Atlantis".to_owned()),
                "area \"Atlantis\" is not one of the programme's areas",
            ),
            (
                RowProblem::DuplicateInFile { first_line: 4 },
                "household_ref already appears on line 4",
            ),
            (
                RowProblem::BadPhone("123".to_owned()),
                "phone \"123\" is not an international number such as +34 612 345 678",
            ),
        ];
        for (problem, sentence) in cases {
            assert_eq!(problem.to_string(), sentence);
        }
        let rejection = Rejection {
            line: 7,
            household_ref: Some("HH-12".to_owned()),
            reasons: vec![
                RowProblem::MissingField("name"),
                RowProblem::UnknownArea("X".to_owned()),
            ],
        };
        assert_eq!(
            rejection.to_string(),
            "line 7 (HH-12): name is empty; area \"X\" is not one of the programme's areas"
        );
    }

    #[test]
    fn the_rejection_report_is_excel_friendly_csv_that_reads_back() {
        let text = format!(
            "{HEADER}=HYPERLINK(1),Ana,1,Centro,,\n,\"Omar, \"\"Al\"\"\",x,Centro,,\nHH-3,Ana,1,Centro,,\n"
        );
        let report = parse(&text);
        let csv = rejection_report_csv(&report);
        assert!(csv.starts_with("\u{FEFF}line,household_ref,reasons\r\n"));
        let body = csv.trim_start_matches('\u{FEFF}');
        let mut reader = csv::Reader::from_reader(body.as_bytes());
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|record| record.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], "2");
        assert_eq!(rows[0][1], "'=HYPERLINK(1)");
        assert!(rows[0][2].starts_with("household_ref \"=HYPERLINK(1)\" may hold only"));
        assert_eq!(rows[1][0], "3");
        assert_eq!(rows[1][1], "");
        assert_eq!(
            rows[1][2],
            "household_ref is empty; dependents must be a whole number, but is \"x\""
        );
        assert!(csv.ends_with("\r\n"));
        assert_eq!(
            rejection_report_csv(&EnrolmentReport::default()),
            "\u{FEFF}line,household_ref,reasons\r\n"
        );
    }

    #[test]
    fn synthetic_files_are_deterministic_multilingual_and_valid() {
        let rules = rules();
        let csv = synthetic_enrolment_csv(2000, 42, &rules);
        assert_eq!(csv, synthetic_enrolment_csv(2000, 42, &rules));
        assert_ne!(csv, synthetic_enrolment_csv(2000, 43, &rules));
        let text = std::str::from_utf8(&csv).unwrap();
        for sample in ["García", "Παπαδόπουλος", "محمد", "\r\n", "\""] {
            assert!(text.contains(sample), "{sample}");
        }
        let report = parse_enrolment(&csv, &rules).unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
        assert_eq!(report.accepted.len(), 2000);
        assert_eq!(report.accepted[1999].line, 2001);
        assert!(report.accepted.iter().any(|h| h.phone.is_some()));
        assert!(report.accepted.iter().any(|h| h.language == "ar"));
    }

    mod arbitrary_input {
        use proptest::prelude::*;

        use super::*;

        const BOM: char = '\u{FEFF}';

        /// Bytes that look like an enrolment file: the header, then rows built from the
        /// characters that break CSV readers (quotes, delimiters, line ends, BOMs, non-ASCII).
        fn csv_like() -> impl Strategy<Value = Vec<u8>> {
            let cell = proptest::string::string_regex(
                "[a-zA-Z0-9 ;,\"\r\n+\u{FEFF}\u{0645}\u{03b1}\t-]{0,12}",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let row = proptest::collection::vec(cell, 0..8).prop_map(|cells| cells.join(";"));
            proptest::collection::vec(row, 0..20).prop_map(|rows| {
                let mut text = String::from("household_ref;name;dependents;area;phone;language\n");
                text.push_str(&rows.join("\n"));
                text.into_bytes()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any bytes: an answer (a report or a file-level error), never a panic; every
            /// row accounted for once; line numbers inside the file.
            #[test]
            fn any_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = parse_enrolment(&bytes, &rules());
            }

            #[test]
            fn csv_like_files_report_every_row_once(bytes in csv_like()) {
                if let Ok(report) = parse_enrolment(&bytes, &rules()) {
                    let lines = bytes.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
                    let mut seen: Vec<usize> = report
                        .accepted
                        .iter()
                        .map(|h| h.line)
                        .chain(report.rejected.iter().map(|r| r.line))
                        .collect();
                    let total = seen.len();
                    seen.sort_unstable();
                    seen.dedup();
                    prop_assert_eq!(seen.len(), total, "a line reported twice");
                    prop_assert!(seen.iter().all(|&l| l >= 2 && l <= lines), "{:?}", seen);
                    let csv = rejection_report_csv(&report);
                    prop_assert!(csv.starts_with(BOM), "no byte-order mark");
                }
            }
        }
    }
}
